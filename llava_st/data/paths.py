"""The one data-root path rule: where a record's media file lies, and only inside its data root.

Every reader of record media (eval drivers, both training datasets, the synthesis Annotator, the tube
drawer, the lmms-eval tasks) goes through `resolve_media`; the validator applies the same rule.

A media path is accepted when it is a non-empty string without NUL bytes, relative (not absolute, not
starting with `~`), has no `..` component, and, resolved under the root with every symbolic link
followed, still lies inside the resolved root. Anything else raises `MediaPathError`, whose message
names the record id and the field ("id=<id> field=<field>: ...").
"""

import os
from pathlib import Path
from typing import Optional


class MediaPathError(ValueError):
    """A record's media path that is not allowed under its data root; the message names id and field."""

    def __init__(self, record_id, field: str, message: str):
        super().__init__(f"id={show_id(record_id)} field={field}: {message}")
        self.record_id = record_id
        self.field = field
        self.reason = message


def show_id(record_id, limit: int = 120) -> str:
    """A record id as it can be printed anywhere: as is when printable (cut to `limit` characters), else
    escaped (lone surrogates, control characters); "?" for None."""
    if record_id is None:
        return "?"
    try:
        text = str(record_id)
    except ValueError:  # an integer beyond Python's digit limit for str()
        return "<integer too large to print>"
    if not text.isprintable():
        text = ascii(text)[1:-1]
    return text if len(text) <= limit else text[:limit] + "..."


def _show_path(path: str, limit: int = 200) -> str:
    text = repr(path)
    return text if len(text) <= limit else text[:limit] + "...'"


def path_problem(path) -> Optional[str]:
    """Why `path` can never be a media path under a data root (checks that need no file system), or None."""
    if not isinstance(path, str) or not path.strip():
        return f"must be a non-empty relative path, got {_show_path(path)}"
    if "\x00" in path:
        return f"path {_show_path(path)} contains a NUL byte"
    if os.path.isabs(path) or path.startswith("~"):
        return f"path {_show_path(path)} must be relative to the data root"
    if ".." in Path(path).parts:
        return f"path {_show_path(path)} escapes the data root"
    return None


def resolve_media(data_root, path, record_id=None, field: str = "video") -> Path:
    """The file `path` of record `record_id` (its field `field`) under `data_root`, every link followed.

    Raises MediaPathError (naming id and field) when `path` is not a usable relative path or leads outside
    the resolved data root, e.g. through a symbolic link. Does not check that the file exists.
    """
    problem = path_problem(path)
    if problem is not None:
        raise MediaPathError(record_id, field, problem)
    try:
        root = Path(data_root).resolve()
        resolved = (root / path).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a link loop, an unusable root
        raise MediaPathError(record_id, field, f"path {_show_path(path)} cannot be resolved under {str(data_root)!r}: {exc}") from exc
    if not resolved.is_relative_to(root):
        raise MediaPathError(record_id, field, f"path {_show_path(path)} escapes the data root {str(root)!r} (through a link)")
    return resolved


def media_field(record) -> Optional[str]:
    """"video" or "image": the media field a record carries (video first), or None."""
    if isinstance(record, dict):
        for key in ("video", "image"):
            if key in record:
                return key
    return None
