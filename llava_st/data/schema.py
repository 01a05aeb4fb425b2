"""The Uni-STG record contract and its validator.

A record is one JSON object:
    id            str or int, unique in a file
    task          "stvg" | "vtg" | "rec" | "qa" | "caption" | "conversation"
    video | image path relative to the data root (exactly one of them; grounding: video for stvg/vtg,
                  image for rec)
    conversations [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": ...}, ...]
grounding tasks add
    caption       the description (non-empty)
    span          [t_s, t_e] seconds, closed (core.timespan): 0 <= t_s <= t_e <= duration (a one-frame tube
                  has t_s == t_e; stvg, vtg; absent for rec)
    boxes         [{"t": seconds, "xyxy": [x0, y0, x1, y1] pixels of the original frame}]
                  stvg: >= 1, every t inside the span; rec: exactly one with t = 0; vtg: none
    width, height frame size in pixels (stvg, rec)
    duration, fps seconds and frames per second of the video (duration: stvg, vtg; fps: stvg)
optional
    clip          [t0, t1] seconds: the part of the video the annotation belongs to (VidSTG's used segment)
    sentence_type a string (VidSTG: "declarative" | "interrogative")
    annotator_spans [[t_s, t_e], ...] seconds, every annotator's span (DiDeMo)

Media paths follow the one data-root rule of `data.paths` (no `..`, not absolute, no NUL byte; with a data
root, no symbolic link leading out of it).

`validate_record` returns every problem as "id=<id> field=<field>: <what is wrong>" and never raises,
whatever the record holds (numbers beyond float range, lone surrogates, deep nesting). `iter_problems` and
`validate_file` read JSONL and JSON list files (`data.jsonl.iter_records`); every problem of a file names
the file and the line (JSONL) or record number (JSON list, from 1).
"""

import math
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional

from tqdm import tqdm

from .jsonl import iter_records
from .paths import MediaPathError, path_problem, resolve_media, show_id

TASKS = ("stvg", "vtg", "rec", "qa", "caption", "conversation")
GROUNDING_TASKS = ("stvg", "vtg", "rec")
SPEAKERS = ("human", "gpt")
IMAGE_TOKEN = "<image>"
# Tolerances: times may sit half a millisecond outside, boxes half a pixel outside (rounding in sources).
TIME_TOL = 5e-4
PIXEL_TOL = 0.5
# duration x fps beyond this is no real video (~92 hours at 30 fps), and would make scoring allocate without bound.
MAX_VIDEO_FRAMES = 10_000_000


def _is_number(x) -> bool:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int beyond float range
        return False


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 80, 80, 40


def _r(value) -> str:
    """A short repr of any value for a message (bounded length and depth, lone surrogates escaped)."""
    try:
        return _REPR.repr(value)
    except (ValueError, RecursionError):  # an int beyond Python's digit limit for str()
        return f"<{type(value).__name__}>"


def _usable_id(rid) -> bool:
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return False
    if isinstance(rid, int):
        return _is_number(rid)
    return bool(rid)


class _Problems:
    def __init__(self, record_id):
        self.record_id = record_id
        self.shown = show_id(record_id) if record_id is not None else "?"
        self.items: List[str] = []

    def add(self, field_name: str, message: str) -> None:
        self.items.append(f"id={self.shown} field={field_name}: {message}")


def validate_record(record, data_root=None, conversations: bool = True) -> List[str]:
    """Every problem of one Uni-STG record (empty list when valid); `data_root` enables the path checks
    against that directory (paths must stay inside it, `data.paths.resolve_media`). conversations=False
    skips the `conversations` checks (evaluation reads only the grounding fields). Never raises."""
    if not isinstance(record, dict):
        return [f"id=? field=record: a record must be a JSON object, got {type(record).__name__}"]
    rid = record.get("id")
    p = _Problems(rid if _usable_id(rid) else None)
    if p.record_id is None:
        p.add("id", f"missing or empty (must be a non-empty string or an integer), got {_r(rid)}")
    elif isinstance(rid, str) and not _utf8(rid):
        p.add("id", f"not valid Unicode text (a lone surrogate): {_r(rid)}")
    task = record.get("task")
    if not isinstance(task, str) or task not in TASKS:
        p.add("task", f"unknown task {_r(task)}; expected one of {', '.join(TASKS)}")
        task = None
    _check_media(record, task, data_root, p)
    if conversations:
        _check_conversations(record.get("conversations"), p)
    if task in GROUNDING_TASKS:
        _check_grounding(record, task, p)
    _check_optional(record, p)
    return p.items


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_media(record, task, data_root, p) -> None:
    keys = [k for k in ("video", "image") if k in record]
    if len(keys) != 1:
        p.add("video/image", f"exactly one of 'video' or 'image' is required, found {keys or 'none'}")
        return
    key = keys[0]
    if task in ("stvg", "vtg") and key != "video":
        p.add(key, f"task {task} needs a 'video'")
    if task == "rec" and key != "image":
        p.add(key, "task rec needs an 'image'")
    path = record[key]
    problem = path_problem(path)
    if problem is not None:
        p.add(key, problem)
        return
    if not _utf8(path):
        p.add(key, f"path {_r(path)} is not valid Unicode text (a lone surrogate)")
        return
    if data_root is not None:
        try:
            resolve_media(data_root, path, p.record_id, key)
        except MediaPathError as exc:
            p.add(key, exc.reason)


def _check_conversations(conv, p) -> None:
    if not isinstance(conv, list) or not conv:
        p.add("conversations", "must be a non-empty list of turns")
        return
    for i, turn in enumerate(conv):
        name = f"conversations[{i}]"
        if not isinstance(turn, dict):
            p.add(name, f"a turn must be an object, got {type(turn).__name__}")
            continue
        if turn.get("from") not in SPEAKERS:
            p.add(f"{name}.from", f"must be 'human' or 'gpt', got {_r(turn.get('from'))}")
        if not isinstance(turn.get("value"), str) or not turn.get("value"):
            p.add(f"{name}.value", "must be a non-empty string")
    first = conv[0]
    if isinstance(first, dict) and first.get("from") == "human" and isinstance(first.get("value"), str):
        if IMAGE_TOKEN not in first["value"]:
            p.add("conversations[0].value", f"the first human turn must contain {IMAGE_TOKEN}")
    elif isinstance(first, dict):
        p.add("conversations[0].from", "the first turn must be from 'human'")
    if not any(isinstance(t, dict) and t.get("from") == "gpt" for t in conv):
        p.add("conversations", "no 'gpt' answer turn")


def _positive(record, name, p) -> Optional[float]:
    value = record.get(name)
    if value is None:
        p.add(name, "missing")
        return None
    if not _is_number(value) or value <= 0:
        p.add(name, f"must be a positive finite number, got {_r(value)}")
        return None
    return float(value)


def _check_grounding(record, task, p) -> None:
    caption = record.get("caption")
    if not isinstance(caption, str) or not caption.strip():
        p.add("caption", f"must be a non-empty string, got {_r(caption)}")
    width = height = duration = None
    if task in ("stvg", "rec"):
        width, height = _positive(record, "width", p), _positive(record, "height", p)
    if task in ("stvg", "vtg"):
        duration = _positive(record, "duration", p)
    if task == "stvg":
        fps = _positive(record, "fps", p)
        if fps is not None and duration is not None and duration * fps > MAX_VIDEO_FRAMES:
            p.add("duration", f"{duration} s at {fps} fps is {duration * fps:.3g} frames, more than {MAX_VIDEO_FRAMES:,}")
    span = None
    if task == "rec":
        if "span" in record:
            p.add("span", "must be absent for rec (an image has no time)")
    else:
        span = _check_span(record.get("span"), duration, "span", p)
        if "clip" in record:
            clip = _check_span(record.get("clip"), duration, "clip", p)
            if clip and span and (span[0] < clip[0] - TIME_TOL or span[1] > clip[1] + TIME_TOL):
                p.add("span", f"span {list(span)} lies outside the clip {list(clip)}")
    boxes = record.get("boxes")
    if task == "vtg":
        if boxes:
            p.add("boxes", "vtg records carry no boxes")
        return
    if not isinstance(boxes, list) or not boxes:
        p.add("boxes", "must be a non-empty list of {t, xyxy}")
        return
    if task == "rec" and len(boxes) != 1:
        p.add("boxes", f"rec needs exactly one box, got {len(boxes)}")
    for i, box in enumerate(boxes):
        _check_box(box, i, task, span, width, height, p)


def _check_span(span, duration, name, p) -> Optional[tuple]:
    if span is None:
        p.add(name, "missing")
        return None
    if not isinstance(span, (list, tuple)) or len(span) != 2 or not all(_is_number(x) for x in span):
        p.add(name, f"must be [t_s, t_e] of two finite numbers (seconds), got {_r(span)}")
        return None
    start, end = float(span[0]), float(span[1])
    ok = True
    if start > end:
        p.add(name, f"reversed span [{start}, {end}] (needs t_s <= t_e)")
        ok = False
    if start < 0:
        p.add(name, f"starts before the video: t_s = {start} < 0")
        ok = False
    if duration is not None and end > duration + TIME_TOL:
        p.add(name, f"ends after the video: t_e = {end} > duration {duration}")
        ok = False
    return (start, end) if ok else None


def _check_box(box, i, task, span, width, height, p) -> None:
    name = f"boxes[{i}]"
    if not isinstance(box, dict):
        p.add(name, f"must be an object {{t, xyxy}}, got {type(box).__name__}")
        return
    t = box.get("t")
    if not _is_number(t):
        p.add(f"{name}.t", f"must be a finite number (seconds), got {_r(t)}")
    elif task == "rec" and t != 0:
        p.add(f"{name}.t", f"an image box has t = 0, got {t}")
    elif span is not None and not (span[0] - TIME_TOL <= t <= span[1] + TIME_TOL):
        p.add(f"{name}.t", f"time {t} lies outside the span [{span[0]}, {span[1]}]")
    xyxy = box.get("xyxy")
    if not isinstance(xyxy, (list, tuple)) or len(xyxy) != 4:
        p.add(f"{name}.xyxy", f"must be [x0, y0, x1, y1] pixels, got {_r(xyxy)}")
        return
    if not all(_is_number(v) for v in xyxy):
        p.add(f"{name}.xyxy", f"coordinates must be finite numbers, got {_r(xyxy)}")
        return
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    if min(x0, y0, x1, y1) < -PIXEL_TOL:
        p.add(f"{name}.xyxy", f"negative coordinate in {list(xyxy)}")
    if x1 <= x0 or y1 <= y0:
        p.add(f"{name}.xyxy", f"zero or negative area: {list(xyxy)} (needs x0 < x1 and y0 < y1)")
    if width is not None and max(x0, x1) > width + PIXEL_TOL:
        p.add(f"{name}.xyxy", f"outside the frame: x {max(x0, x1)} > width {width}")
    if height is not None and max(y0, y1) > height + PIXEL_TOL:
        p.add(f"{name}.xyxy", f"outside the frame: y {max(y0, y1)} > height {height}")


def _check_optional(record, p) -> None:
    if "sentence_type" in record and not isinstance(record["sentence_type"], str):
        p.add("sentence_type", f"must be a string, got {_r(record['sentence_type'])}")
    if "annotator_spans" in record:
        spans = record["annotator_spans"]
        if not isinstance(spans, list):
            p.add("annotator_spans", f"must be a list of [t_s, t_e], got {_r(spans)}")
            return
        for i, span in enumerate(spans):
            if not isinstance(span, (list, tuple)) or len(span) != 2 or not all(_is_number(x) for x in span):
                p.add(f"annotator_spans[{i}]", f"must be [t_s, t_e] of two finite numbers (seconds), got {_r(span)}")


@dataclass
class ValidationReport:
    """Outcome of `validate_file`: counts and every problem (each names the id or line and the field)."""

    records: int = 0
    bad_records: int = 0
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def iter_problems(path, data_root=None, progress: bool = False) -> Iterator[List[str]]:
    """Yield the problems of each record of a JSONL or JSON list file in order (an empty list for a good
    record), including unreadable lines and duplicate ids; each message starts with "<file>: line N: "
    (or "record N: " in a list). File-level problems raise data.jsonl.DataFileError naming the file."""
    seen = set()
    entries = iter_records(path)
    if progress:
        entries = tqdm(entries, desc=f"validate {Path(path).name}", unit="rec")
    for where, record, error in entries:
        if error:
            yield [f"{path}: {error}"]
            continue
        problems = validate_record(record, data_root)
        rid = record.get("id")
        if _usable_id(rid):
            key = str(rid)  # 1 and "1" are the same sample to every reader
            if key in seen:
                problems.append(f"id={show_id(rid)} field=id: duplicate id")
            seen.add(key)
        yield [f"{path}: {where}: {msg}" for msg in problems]


def validate_file(path, data_root=None, progress: bool = False) -> ValidationReport:
    """Validate a Uni-STG JSONL or JSON list file record by record (JSONL streams); see `validate_record`."""
    report = ValidationReport()
    for problems in iter_problems(path, data_root, progress):
        report.records += 1
        if problems:
            report.bad_records += 1
            report.problems.extend(problems)
    return report
