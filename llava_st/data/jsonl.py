"""Streaming JSON Lines: read one record at a time, append one record at a time, resume by id.

Nothing here loads a whole file: readers yield line by line and writers flush each line, so a killed job
leaves a valid prefix that `done_ids` can resume from.
"""

import json
import os
from pathlib import Path
from typing import Iterator, Optional, Tuple


def iter_lines(path) -> Iterator[Tuple[int, Optional[dict], Optional[str]]]:
    """Yield (line number from 1, record or None, error or None) for each non-blank line of a JSONL file.

    A line that is not a JSON object yields its error instead of raising, so one bad line loses nothing else.
    """
    with open(path, "r", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                yield line_no, None, f"line {line_no}: invalid JSON ({e.msg} at column {e.colno})"
                continue
            if not isinstance(record, dict):
                yield line_no, None, f"line {line_no}: a record must be a JSON object, got {type(record).__name__}"
                continue
            yield line_no, record, None


def read_jsonl(path) -> Iterator[dict]:
    """Yield the records of a JSONL file; raises ValueError naming the line on a malformed one."""
    for _, record, error in iter_lines(path):
        if error:
            raise ValueError(f"{path}: {error}")
        yield record


def count_lines(path) -> int:
    """Number of non-blank lines (for progress bar totals), read in blocks."""
    with open(path, "r", encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def done_ids(path) -> set:
    """Ids of the records already in a (possibly partial) JSONL output; empty when it does not exist.

    A last line cut off by a crash is ignored, and `JsonlWriter` drops it before appending.
    """
    if not Path(path).exists():
        return set()
    return {str(r["id"]) for _, r, err in iter_lines(path) if err is None and "id" in r}


class JsonlWriter:
    """Append records to a JSONL file one line at a time (a context manager).

    `append=False` truncates. With `append=True` an unterminated last line (a crash mid-write) is removed
    first, so the file stays valid JSONL.
    """

    def __init__(self, path, append: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if append:
            _drop_partial_last_line(self.path)
        self._f = open(self.path, "a" if append else "w", encoding="utf-8")
        self.count = 0

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        self.count += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _drop_partial_last_line(path: Path, block: int = 1 << 16) -> None:
    """Cut an unterminated last line (a write interrupted by a crash), reading backwards in blocks."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(pos - block, 0)
            f.seek(start)
            chunk = f.read(pos - start)
            if pos == end and chunk.endswith(b"\n"):
                return
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                f.truncate(start + newline + 1)
                return
            pos = start
        f.truncate(0)
