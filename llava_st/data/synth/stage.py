"""Running one synthesis stage over a JSONL file: streaming, resumable, with drop counts by reason.

A stage is a callable `record -> record` that raises `Dropped(reason)` for a record it rejects (a record
lacking a field the stage needs, or holding a wrong type, is rejected the same way, with the id logged). Kept
records go to `out`; rejected ones to `out` + ".dropped.jsonl" as {"id", "reason"}. A rerun skips the ids
found in either file, so an interrupted stage resumes where it stopped, and its report counts both runs.
"""

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from ..jsonl import JsonlWriter, count_lines, done_ids, iter_lines

logger = logging.getLogger(__name__)


class Dropped(Exception):
    """Raised by a stage for a record it rejects; `reason` is a short fixed phrase (the counting key)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


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


def run_stage(
    stage: Callable[[dict], dict], in_path, out_path, name: str = "stage", progress: bool = True
) -> StageReport:
    """Apply `stage` to every record of `in_path`, appending to `out_path`; see the module docstring."""
    report = StageReport(name)
    done = done_ids(out_path)
    report.kept = len(done)
    for _, r, err in iter_lines(dropped_path(out_path)) if dropped_path(out_path).exists() else ():
        if err is None:
            done.add(str(r["id"]))
            report.dropped[r["reason"]] += 1
    total = count_lines(in_path)
    with JsonlWriter(out_path, append=True) as kept, JsonlWriter(dropped_path(out_path), append=True) as rejected:
        for line_no, record, error in tqdm(
            iter_lines(in_path), desc=name, total=total, unit="rec", disable=not progress
        ):
            if error:
                rid = f"line{line_no}"
                if rid not in done:
                    rejected.write({"id": rid, "reason": "unreadable input line"})
                    report.dropped["unreadable input line"] += 1
                continue
            rid = str(record.get("id"))
            if rid in done:
                report.resumed += 1
                continue
            try:
                kept.write(stage(record))
                report.kept += 1
            except Dropped as d:
                rejected.write({"id": rid, "reason": d.reason})
                report.dropped[d.reason] += 1
            except (KeyError, TypeError, ValueError) as e:
                reason = f"input lacks field {e.args[0]!r}" if isinstance(e, KeyError) else "malformed input record"
                logger.warning("id=%s: %s (%s: %s)", rid, reason, type(e).__name__, e)
                rejected.write({"id": rid, "reason": reason})
                report.dropped[reason] += 1
            done.add(rid)
    logger.info(report.summary())
    return report
