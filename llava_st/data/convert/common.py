"""Building blocks every converter shares: the record builder, box and time helpers, input checks, drops.

Converters yield Uni-STG records (llava_st.data.schema): times in seconds, boxes pixel xyxy of the
original frame. Spans follow the time contract of core.timespan: a span over 0-based frames first..last
(inclusive) is `frames_to_span(first, last, fps)`, a box of frame k has t = `frame_time(k, fps)`.
Instructions come from data.templates (a template drawn per record by a seeded rng); STVG/VTG answers
are core.timespan.format_span of the span, REC answers data.templates.REC_ANSWER.

Bad input: a whole file that cannot be read (not JSON, not the expected top-level type) raises
`ConvertInputError` naming the file; one bad entry (a wrong type, NaN/inf, a non-integral or huge frame
number, a negative size, ...) raises `BadEntry` naming the field, which the converter reports through its
`Drops` before it goes on with the next entry.
"""

import json
import logging
import math
import random
import reprlib
from collections import Counter
from typing import Iterable, List, Optional, Sequence

from tqdm import tqdm

from ...core.timespan import format_span, frames_to_span
from ..paths import path_problem, show_id
from ..schema import MAX_VIDEO_FRAMES, validate_record
from ..templates import REC_ANSWER, instruction

logger = logging.getLogger(__name__)

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong, _REPR.maxlist, _REPR.maxdict = 2, 60, 60, 30, 6, 4
_NO_VALUE = object()


def short(value) -> str:
    """A bounded repr of any source value for a message."""
    try:
        return _REPR.repr(value)
    except (ValueError, RecursionError):  # an int beyond Python's digit limit for str()
        return f"<{type(value).__name__}>"


class ConvertInputError(ValueError):
    """A whole input file the converter cannot read; the message (one line) names the file."""


class BadEntry(ValueError):
    """One source entry that cannot be converted. `reason` names the field and the problem (no values, so
    drops of one kind add up); `detail` adds where and what was found."""

    def __init__(self, field: str, problem: str, value=_NO_VALUE, where: str = ""):
        self.field, self.problem = field, problem
        parts = [where] if where else []
        if value is not _NO_VALUE:
            parts.append(f"got {short(value)}")
        self.detail = ", ".join(parts)
        super().__init__(self.reason + (f" ({self.detail})" if self.detail else ""))

    @property
    def reason(self) -> str:
        return f"bad {self.field}: {self.problem}"


# What one bad entry may raise besides BadEntry (checks the converters did not foresee); caught per entry.
ENTRY_ERRORS = (BadEntry, KeyError, TypeError, ValueError, IndexError, ArithmeticError, AttributeError, RecursionError)


class Drops(Counter):
    """Counts of source items a converter skipped, by reason; `note` also logs the first few of each reason
    and keeps the ids of the first `MAX_IDS` in `ids[reason]`."""

    MAX_IDS = 100

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ids = {}

    def note(self, reason: str, item_id, detail: str = "") -> None:
        self[reason] += 1
        ids = self.ids.setdefault(reason, [])
        if len(ids) < self.MAX_IDS:
            ids.append(show_id(item_id))
        if self[reason] <= 3:
            logger.warning("skipped %s: %s%s", show_id(item_id), reason, f" ({detail})" if detail else "")

    def error(self, exc: Exception, item_id) -> None:
        """Note an entry that raised `exc` (a BadEntry by its reason, anything else by its type)."""
        if isinstance(exc, BadEntry):
            self.note(exc.reason, item_id, exc.detail)
        else:
            self.note(f"bad source entry: {type(exc).__name__}", item_id, short(str(exc)))


# ---------------------------------------------------------------- reading and checking source values
def load_json(path: str, kind: type, what: str):
    """The JSON value of file `path`, which must be a `kind` (dict or list, described by `what`); any
    other content raises ConvertInputError naming the file."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except UnicodeDecodeError as e:
        raise ConvertInputError(f"{path}: not valid JSON (not UTF-8 text: {e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ConvertInputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise ConvertInputError(f"{path}: not readable JSON (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer beyond Python's digit limit
        raise ConvertInputError(f"{path}: not readable JSON ({short(str(e))})") from None
    if not isinstance(data, kind):
        raise ConvertInputError(f"{path}: expected {what} at the top level, got {_json_type(data)}")
    return data


def _json_type(value) -> str:
    """The JSON type of a parsed value with its article: "an object", "an array", "a string", "null", ..."""
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def need(item: dict, key: str, field: Optional[str] = None):
    """item[key], or BadEntry naming the missing field."""
    if key not in item:
        raise BadEntry(field or key, "missing")
    return item[key]


def mapping(value, field: str) -> dict:
    if not isinstance(value, dict):
        raise BadEntry(field, f"not a JSON object (got {_json_type(value)})")
    return value


def sequence(value, field: str) -> list:
    if not isinstance(value, list):
        raise BadEntry(field, f"not a JSON array (got {_json_type(value)})")
    return value


def text(value, field: str) -> str:
    """A non-blank string."""
    if not isinstance(value, str):
        raise BadEntry(field, "not a string", value)
    if not value.strip():
        raise BadEntry(field, "empty")
    return value


def key_id(value, field: str):
    """An id used to look something up (an int or a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadEntry(field, "not an integer or string id", value)
    return value


def number(value, field: str, positive: bool = False, where: str = ""):
    """A finite number (an int stays an int); `positive`: > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadEntry(field, "not a number", value, where)
    try:
        x = float(value)
    except OverflowError:
        raise BadEntry(field, "a number beyond float range", value, where) from None
    if not math.isfinite(x):
        raise BadEntry(field, "not a finite number", value, where)
    if positive and x <= 0:
        raise BadEntry(field, "not a positive number", value, where)
    return value if isinstance(value, int) else x


def frame_number(value, field: str, low: int = 0) -> int:
    """An integral frame number (3.0 is 3, 2.7 is refused) in low..MAX_VIDEO_FRAMES."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadEntry(field, "not a frame number", value)
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise BadEntry(field, "not an integral frame number", value)
        value = int(value)
    if value < low:
        raise BadEntry(field, f"a frame number below {low}", value)
    if value > MAX_VIDEO_FRAMES:
        raise BadEntry(field, f"a frame number beyond any real video (> {MAX_VIDEO_FRAMES})", value)
    return value


def frame_range(begin, end, frame_count: int, field: str, begin_key: str, end_key: str) -> tuple:
    """(begin, end) integral frames of an end-exclusive range with 0 <= begin < end <= frame_count."""
    b = frame_number(begin, f"{field}.{begin_key}")
    e = frame_number(end, f"{field}.{end_key}")
    if not b < e <= frame_count:
        raise BadEntry(field, f"not 0 <= {begin_key} < {end_key} <= frame_count", [b, e], f"frame_count {frame_count}")
    return b, e


def closed_span(first: int, last: int, fps: float, field: str) -> tuple:
    """frames_to_span(first, last, fps) of frames first..last (a one-frame tube has start == end), refused
    (BadEntry) when reversed, or when an fps so high that two frames' ends round to the same 0.1 ms."""
    if last < first:
        raise BadEntry(field, "reversed frames (last before first)", [first, last])
    span = frames_to_span(first, last, fps)
    if last > first and not span[0] < span[1]:
        raise BadEntry("fps", "too high: the span rounds to zero length", fps)
    return span


def duration_of(frame_count: int, fps: float) -> float:
    """frame_count / fps seconds, refused (BadEntry) when not finite."""
    duration = frame_count / fps
    if not math.isfinite(duration):
        raise BadEntry("fps", "too small: the duration is not finite", fps)
    return duration


def xywh_box(value, field: str, where: str = "") -> List[float]:
    """[x, y, w, h] of four finite numbers with w, h >= 0."""
    if not isinstance(value, list) or len(value) != 4:
        raise BadEntry(field, "not [x, y, w, h]", value, where)
    x, y, w, h = (float(number(v, field, where=where)) for v in value)
    if w < 0 or h < 0:
        raise BadEntry(field, "negative width or height", value, where)
    return [x, y, w, h]


# ---------------------------------------------------------------- records
def conversations(task: str, caption: str, rng: random.Random, span: Optional[Sequence[float]] = None) -> List[dict]:
    """The two LLaVA turns of a grounding record: a templated instruction after `<image>\\n`, and the answer
    (the span template for stvg/vtg, REC_ANSWER for rec)."""
    answer = REC_ANSWER if task == "rec" else format_span(float(span[0]), float(span[1]))
    return [
        {"from": "human", "value": "<image>\n" + instruction(task, caption, rng)},
        {"from": "gpt", "value": answer},
    ]


def grounding_record(
    record_id: str,
    task: str,
    media: str,
    caption: str,
    rng: random.Random,
    span: Optional[Sequence[float]] = None,
    boxes: Optional[List[dict]] = None,
    width: Optional[float] = None,
    height: Optional[float] = None,
    duration: Optional[float] = None,
    fps: Optional[float] = None,
    **extra,
) -> dict:
    """One Uni-STG grounding record. `media` is the video (stvg, vtg) or image (rec) path relative to the
    data root; `span` (seconds) and `boxes` ([{"t": seconds, "xyxy": pixels}]) as in the schema; `extra`
    keys are copied (e.g. `clip`, `source`, `sentence_type`)."""
    caption = " ".join(text(caption, "caption").split())
    media_key = "image" if task == "rec" else "video"
    if not isinstance(media, str):
        raise BadEntry(media_key, "path not a string", media)
    if path_problem(media) is not None:  # absolute, `..`, NUL, empty: never a path under a data root
        raise BadEntry(media_key, "not a relative path inside the data root", media)
    record = {"id": record_id, "task": task, ("image" if task == "rec" else "video"): media}
    record["conversations"] = conversations(task, caption, rng, span)
    record["caption"] = caption
    if span is not None:
        record["span"] = [round(float(span[0]), 4), round(float(span[1]), 4)]
    if boxes is not None:
        record["boxes"] = boxes
    for key, value in (("width", width), ("height", height), ("duration", duration), ("fps", fps)):
        if value is not None:
            record[key] = round(float(value), 4) if isinstance(value, float) else value
    record.update(extra)
    problems = validate_record(record)
    if problems:  # what the checks above did not foresee (e.g. an id that is no valid text): the entry is dropped
        field, _, message = problems[0].partition(" field=")[2].partition(": ")
        raise BadEntry(field, "not valid in a Uni-STG record", where=message)
    return record


def xywh_to_xyxy_clipped(xywh: Sequence[float], width: float, height: float) -> Optional[List[float]]:
    """Pixel xywh -> pixel xyxy clipped to a width x height frame; None when nothing of it is left."""
    x, y, w, h = (float(v) for v in xywh)
    return clip_xyxy([x, y, x + w, y + h], width, height)


def clip_xyxy(xyxy: Sequence[float], width: float, height: float) -> Optional[List[float]]:
    """Pixel xyxy clipped to a width x height frame, rounded to 0.01 px; None when of zero area after it."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    if x1 <= x0 or y1 <= y0:
        return None
    return [round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)]


def clip_span(start: float, end: float, duration: Optional[float]) -> Optional[tuple]:
    """(start, end) seconds clipped to [0, duration]; None when empty afterwards (start >= end)."""
    start = max(float(start), 0.0)
    end = float(end) if duration is None else min(float(end), float(duration))
    return (start, end) if start < end else None


def iter_progress(items: Iterable, desc: str, total: Optional[int] = None):
    """A tqdm progress bar over `items` (converters call it on their source items)."""
    return tqdm(items, desc=desc, total=total, unit="item")
