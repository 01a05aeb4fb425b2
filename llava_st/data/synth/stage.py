"""Running one synthesis stage over a JSONL file: streaming, resumable, with drop counts by reason.

A stage is a callable `record -> record` that raises `Dropped(reason)` for a record it rejects. Bad input
is rejected the same way, each with one warning naming the input file, the line (or record of a JSON
list), the id and the field: a line that is not a JSON object ("unreadable input line", kept as id
`line<N>`), a record without a usable id ("bad input id", as `line<N>`), a record lacking a field the
stage needs ("input lacks field 'x'") or holding a wrong value there ("malformed input record", and the
Annotator's "path outside data root"); a
later record with an id met before is skipped and counted (`duplicates`). `StageReport.rejected` counts
all of these (the CLI exits 1 when any). A JSON list input file is read as a list. Kept
records go to `out`; rejected ones to `out` + ".dropped.jsonl" as {"id", "reason"} (+ "detail" when the
stage gave one, e.g. the last HTTP error of the Analyzer). A rerun skips the ids found in either file, so an
interrupted stage resumes where it stopped, and its report counts both runs.

A stage with a `concurrency` attribute > 1 (the served Analyzer) is applied to that many records at once
in a thread pool; results are still written in input order, so the files are the same as one at a time,
and an interrupted run leaves a prefix of them. `shard=(rank, world_size)` processes only the input's
non-blank lines k with k % world_size == rank (synth.shards).
"""

import logging
import math
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple

from tqdm import tqdm

from ..jsonl import JsonlWriter, count_lines, done_ids, is_json_list, iter_lines, iter_records
from ..paths import show_id

logger = logging.getLogger(__name__)


class Dropped(Exception):
    """Raised by a stage for a record it rejects; `reason` is a short fixed phrase (the counting key),
    `detail` an optional free text kept beside it in the dropped file."""

    def __init__(self, reason: str, detail: Optional[str] = None):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


class BadInput(Dropped):
    """A record lacking a field the stage reads (`missing`), or holding a value there the stage cannot use."""

    def __init__(self, field_name: str, problem: str, missing: bool = False):
        super().__init__(f"input lacks field {field_name!r}" if missing else "malformed input record", f"field={field_name}: {problem}")
        self.field = field_name


BAD_INPUT = ("unreadable input line", "bad input id", "input lacks field", "malformed input record", "path outside data root")


def is_bad_input(reason) -> bool:
    return isinstance(reason, str) and reason.startswith(BAD_INPUT)


def need_text(record: dict, name: str) -> str:
    """record[name] as a non-blank string, else BadInput naming the field."""
    if name not in record:
        raise BadInput(name, "missing", missing=True)
    value = record[name]
    if not isinstance(value, str) or not value.strip():
        raise BadInput(name, f"must be a non-empty string, got {type(value).__name__}")
    return value


def need_span(record: dict, name: str = "span") -> Tuple[float, float]:
    """record[name] as [t_s, t_e] of finite seconds with 0 <= t_s <= t_e, else BadInput naming the field."""
    if name not in record:
        raise BadInput(name, "missing", missing=True)
    span = record[name]
    try:
        ok = isinstance(span, list) and len(span) == 2 and not any(isinstance(x, bool) for x in span)
        start, end = (float(x) for x in span) if ok else (None, None)
        ok = ok and math.isfinite(start) and math.isfinite(end) and 0 <= start <= end
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise BadInput(name, "must be [t_s, t_e] of finite seconds with 0 <= t_s <= t_e")
    return start, end


def _usable_id(rid) -> bool:
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "":
        return False
    try:
        str(rid).encode("utf-8")
    except (UnicodeEncodeError, ValueError):  # a lone surrogate; an int beyond str()'s digit limit
        return False
    return True


def input_entries(in_path) -> Iterator[Tuple[str, str, Optional[dict], Optional[str]]]:
    """(where, id, record or None, error or None) of every input record in order: `where` is "line N" (or
    "record N" of a JSON list); a record that cannot be read, or has no usable id, has error set and the
    id `line<N>` (`record<N>`). File-level problems raise data.jsonl.DataFileError naming the file."""
    for where, record, error in iter_records(in_path):
        if error is None and not _usable_id(record.get("id")):
            error = f"{where}: id={show_id(record.get('id'))} field=id: missing or not a non-empty string or integer"
        if error is not None:
            yield where, where.replace(" ", ""), None, error
        else:
            yield where, str(record["id"]), record, None


@dataclass
class StageReport:
    """kept: records in the output; dropped: reason -> count (this run and earlier runs of the same
    output); resumed: input records skipped because an earlier run handled them; duplicates: records
    skipped because their id came earlier in the input; seconds: wall-clock seconds of the run that made
    the report (None for a merged report)."""

    name: str
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    resumed: int = 0
    duplicates: int = 0
    seconds: Optional[float] = None

    @property
    def rejected(self) -> int:
        """Bad input records: unreadable, without a usable id, lacking or misusing a field, duplicates."""
        return sum(n for r, n in self.dropped.items() if is_bad_input(r)) + self.duplicates

    def summary(self) -> str:
        reasons = ", ".join(f"{r}: {n}" for r, n in self.dropped.most_common()) or "none"
        text = f"{self.name}: kept {self.kept}, dropped {sum(self.dropped.values())} ({reasons}), resumed past {self.resumed}"
        text += f", duplicate ids skipped {self.duplicates}" if self.duplicates else ""
        return text + (f" ({self.seconds:.1f} s)" if self.seconds is not None else "")


def dropped_path(out) -> Path:
    return Path(str(out) + ".dropped.jsonl")


# What a stage may raise on a record it did not foresee (wrong types, huge numbers, ...): caught per record.
RECORD_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, ArithmeticError, RecursionError)


def apply_stage(stage: Callable[[dict], dict], record: dict, rid: str, where: str = "") -> Tuple[Optional[dict], Optional[dict]]:
    """(kept record, None) or (None, dropped row {"id", "reason"[, "detail"]}) for one record; bad input is
    logged once, naming `where` (file and line), the id and the field."""
    try:
        return stage(record), None
    except Dropped as d:
        if is_bad_input(d.reason):  # BadInput, a path outside the data root, ...
            logger.warning("%sid=%s: %s (%s)", where, show_id(rid), d.reason, d.detail)
        row = {"id": rid, "reason": d.reason}
        return None, (dict(row, detail=d.detail) if d.detail else row)
    except RECORD_ERRORS as e:
        if isinstance(e, KeyError):
            name = str(e.args[0]) if e.args else "?"
            reason, detail = f"input lacks field {name!r}", f"field={name}: missing"
        else:
            name = getattr(e, "field", None) or "/".join(getattr(stage, "reads", ())) or "?"
            reason, detail = "malformed input record", f"field={name}: {type(e).__name__}: {str(e)[:200]}"
        logger.warning("%sid=%s: %s (%s)", where, show_id(rid), reason, detail)
        return None, {"id": rid, "reason": reason, "detail": detail}


class _Done:
    """A finished outcome in the same shape as a Future."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value

    def done(self) -> bool:
        return True


def run_stage(
    stage: Callable[[dict], dict],
    in_path,
    out_path,
    name: str = "stage",
    progress: bool = True,
    shard: Optional[Tuple[int, int]] = None,
    concurrency: Optional[int] = None,
) -> StageReport:
    """Apply `stage` to every record of `in_path` (or of its `shard`), appending to `out_path`; see the
    module docstring. `concurrency` defaults to the stage's `concurrency` attribute, else 1."""
    report, start = StageReport(name), time.perf_counter()
    done = done_ids(out_path)
    report.kept = len(done)
    for _, r, err in iter_lines(dropped_path(out_path)) if dropped_path(out_path).exists() else ():
        if err is None and "id" in r:
            done.add(str(r["id"]))
            report.dropped[str(r.get("reason"))] += 1
    rank, world_size = shard or (0, 1)
    workers = max(int(concurrency or getattr(stage, "concurrency", 1) or 1), 1)
    total = None if is_json_list(in_path) else -(-(count_lines(in_path) - rank) // world_size)
    pool = ThreadPoolExecutor(workers, thread_name_prefix=name) if workers > 1 else None
    window: deque = deque()  # (outcome future, counts as resumed) in input order
    seen = set()  # ids met in the input so far (this run)

    def entries():
        for k, (where, rid, record, error) in enumerate(input_entries(in_path)):
            if k % world_size != rank:
                continue
            if error:
                if rid not in done:
                    logger.warning("%s: %s", in_path, error)
                reason = "bad input id" if record is None and "field=id:" in error else "unreadable input line"
                yield _Done(None if rid in done else (None, {"id": rid, "reason": reason, "detail": error}))
                done.add(rid)
                continue
            if rid in seen:
                logger.warning("%s: %s: id=%s field=id: duplicate id (skipped)", in_path, where, show_id(rid))
                report.duplicates += 1
                yield _Done("duplicate")
                continue
            seen.add(rid)
            if rid in done:
                yield _Done("resumed")
                continue
            done.add(rid)
            at = f"{in_path}: {where}: "
            yield pool.submit(apply_stage, stage, record, rid, at) if pool else _Done(apply_stage(stage, record, rid, at))

    bar = tqdm(desc=name, total=total, unit="rec", disable=not progress)
    try:
        with JsonlWriter(out_path, append=True) as kept, JsonlWriter(dropped_path(out_path), append=True) as rejected:

            def write(outcome):
                bar.update(1)
                if outcome == "duplicate":
                    pass
                elif outcome == "resumed":
                    report.resumed += 1
                elif outcome is not None:
                    record, row = outcome
                    if row is None:
                        kept.write(record)
                        report.kept += 1
                    else:
                        rejected.write(row)
                        report.dropped[row["reason"]] += 1

            for future in entries():
                window.append(future)
                while window and (len(window) > 2 * workers or window[0].done()):
                    write(window.popleft().result())
            while window:
                write(window.popleft().result())
    finally:
        bar.close()
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)
    report.seconds = round(time.perf_counter() - start, 3)
    logger.info(report.summary())
    return report
