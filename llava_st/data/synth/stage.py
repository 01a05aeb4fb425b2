"""Running one synthesis stage over a JSONL file: streaming, resumable, with drop counts by reason.

A stage is a callable `record -> record` that raises `Dropped(reason)` for a record it rejects (a record
lacking a field the stage needs, or holding a wrong type, is rejected the same way, with the id logged). Kept
records go to `out`; rejected ones to `out` + ".dropped.jsonl" as {"id", "reason"} (+ "detail" when the
stage gave one, e.g. the last HTTP error of the Analyzer). A rerun skips the ids found in either file, so an
interrupted stage resumes where it stopped, and its report counts both runs.

A stage with a `concurrency` attribute > 1 (the served Analyzer) is applied to that many records at once
in a thread pool; results are still written in input order, so the files are the same as one at a time,
and an interrupted run leaves a prefix of them. `shard=(rank, world_size)` processes only the input's
non-blank lines k with k % world_size == rank (synth.shards).
"""

import logging
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Tuple

from tqdm import tqdm

from ..jsonl import JsonlWriter, count_lines, done_ids, iter_lines

logger = logging.getLogger(__name__)


class Dropped(Exception):
    """Raised by a stage for a record it rejects; `reason` is a short fixed phrase (the counting key),
    `detail` an optional free text kept beside it in the dropped file."""

    def __init__(self, reason: str, detail: Optional[str] = None):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


@dataclass
class StageReport:
    """kept: records in the output; dropped: reason -> count (this run and earlier runs of the same
    output); resumed: input records skipped because an earlier run handled them."""

    name: str
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    resumed: int = 0

    def summary(self) -> str:
        reasons = ", ".join(f"{r}: {n}" for r, n in self.dropped.most_common()) or "none"
        return f"{self.name}: kept {self.kept}, dropped {sum(self.dropped.values())} ({reasons}), resumed past {self.resumed}"


def dropped_path(out) -> Path:
    return Path(str(out) + ".dropped.jsonl")


def apply_stage(stage: Callable[[dict], dict], record: dict, rid: str) -> Tuple[Optional[dict], Optional[dict]]:
    """(kept record, None) or (None, dropped row {"id", "reason"[, "detail"]}) for one record."""
    try:
        return stage(record), None
    except Dropped as d:
        row = {"id": rid, "reason": d.reason}
        return None, (dict(row, detail=d.detail) if d.detail else row)
    except (KeyError, TypeError, ValueError) as e:
        reason = f"input lacks field {e.args[0]!r}" if isinstance(e, KeyError) else "malformed input record"
        logger.warning("id=%s: %s (%s: %s)", rid, reason, type(e).__name__, e)
        return None, {"id": rid, "reason": reason}


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
    report = StageReport(name)
    done = done_ids(out_path)
    report.kept = len(done)
    for _, r, err in iter_lines(dropped_path(out_path)) if dropped_path(out_path).exists() else ():
        if err is None:
            done.add(str(r["id"]))
            report.dropped[r["reason"]] += 1
    rank, world_size = shard or (0, 1)
    workers = max(int(concurrency or getattr(stage, "concurrency", 1) or 1), 1)
    total = -(-(count_lines(in_path) - rank) // world_size)
    pool = ThreadPoolExecutor(workers, thread_name_prefix=name) if workers > 1 else None
    window: deque = deque()  # (outcome future, counts as resumed) in input order

    def entries():
        for k, (line_no, record, error) in enumerate(iter_lines(in_path)):
            if k % world_size != rank:
                continue
            if error:
                rid = f"line{line_no}"
                yield _Done(None if rid in done else (None, {"id": rid, "reason": "unreadable input line"}))
                continue
            rid = str(record.get("id"))
            if rid in done:
                yield _Done("resumed")
                continue
            done.add(rid)
            yield pool.submit(apply_stage, stage, record, rid) if pool else _Done(apply_stage(stage, record, rid))

    bar = tqdm(desc=name, total=total, unit="rec", disable=not progress)
    try:
        with JsonlWriter(out_path, append=True) as kept, JsonlWriter(dropped_path(out_path), append=True) as rejected:

            def write(outcome):
                bar.update(1)
                if outcome == "resumed":
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
    logger.info(report.summary())
    return report
