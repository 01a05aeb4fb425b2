"""Training mixtures: draw records from several Uni-STG JSONL files by counts or ratios, shuffled,
deterministic by seed, without loading the files (only line offsets are kept in memory).

A source is `PATH` (all records), `PATH@COUNT` (an integer number of records) or `PATH@RATIO` (a float:
that fraction of the file; above 1 repeats records). Asking for more records than a file has repeats
every record floor(k / n) times and draws the rest without replacement; repeated records get the id
suffix `#r<copy>` so ids stay unique.

`TABLE1` is the paper's Table 1 mixture (samples per task); `table1_counts` splits each task's count
over the files of that task in proportion to their sizes, optionally scaled down.
"""

import json
import logging
import random
from array import array
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from tqdm import tqdm

from .jsonl import JsonlWriter

logger = logging.getLogger(__name__)

# Paper Table 1 (multi-task instruction tuning): samples per Uni-STG task.
TABLE1 = {"vtg": 50_000, "stvg": 110_000, "rec": 320_000, "qa": 100_000, "caption": 50_000, "conversation": 50_000}


@dataclass
class MixSource:
    """One input file and how much of it to take: `count` records, or `ratio` x its size, or all."""

    path: str
    count: Optional[int] = None
    ratio: Optional[float] = None

    def amount(self, size: int) -> int:
        if self.count is not None:
            return self.count
        if self.ratio is not None:
            return int(round(self.ratio * size))
        return size


def parse_source(spec: str) -> MixSource:
    """`PATH`, `PATH@COUNT` (int) or `PATH@RATIO` (float) -> MixSource."""
    path, sep, amount = spec.rpartition("@")
    if not sep:
        return MixSource(spec)
    try:
        if "." in amount or "e" in amount.lower():
            ratio = float(amount)
            if not ratio >= 0:
                raise ValueError
            return MixSource(path, ratio=ratio)
        count = int(amount)
        if count < 0:
            raise ValueError
        return MixSource(path, count=count)
    except ValueError:
        raise ValueError(f"bad mix source {spec!r}: expected PATH, PATH@COUNT or PATH@RATIO (non-negative)") from None


def line_offsets(path: str) -> array:
    """Byte offsets of the non-blank lines of a file (int64 array), read in one streaming pass."""
    offsets = array("q")
    pos = 0
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                offsets.append(pos)
            pos += len(line)
    return offsets


def first_task(path: str) -> str:
    """The `task` of a file's first record (files are converted one task per file)."""
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return json.loads(line).get("task", "?")
    raise ValueError(f"{path} has no records")


def table1_counts(paths: Sequence[str], sizes: Sequence[int], tasks: Sequence[str], scale: float = 1.0) -> List[int]:
    """Counts per file that make up the paper's Table 1 mixture x `scale`: each task's total is split over
    its files in proportion to their sizes. Files of a task Table 1 lacks raise ValueError."""
    counts = [0] * len(paths)
    for task in sorted(set(tasks)):
        if task not in TABLE1:
            raise ValueError(f"task {task!r} of {[p for p, t in zip(paths, tasks) if t == task]} is not in Table 1")
        members = [i for i, t in enumerate(tasks) if t == task]
        target = int(round(TABLE1[task] * scale))
        total = sum(sizes[i] for i in members) or 1
        given = 0
        for j, i in enumerate(members):
            share = target - given if j == len(members) - 1 else int(round(target * sizes[i] / total))
            counts[i] = share
            given += share
    return counts


def draw(size: int, k: int, rng: random.Random) -> List[int]:
    """k line numbers out of `size`: every line floor(k / size) times, the rest without replacement."""
    if size == 0:
        if k:
            raise ValueError(f"cannot draw {k} records from an empty file")
        return []
    full, rest = divmod(k, size)
    return [i for _ in range(full) for i in range(size)] + rng.sample(range(size), rest)


def mix(
    sources: Sequence[MixSource], out: str, seed: int = 0, counts: Optional[Sequence[int]] = None, progress: bool = True
) -> Dict[str, int]:
    """Write the shuffled mixture to `out` (JSONL); returns records taken per source path.

    `counts` overrides the amounts of `sources` (e.g. from `table1_counts`).
    """
    rng = random.Random(seed)
    offsets = [line_offsets(s.path) for s in sources]
    amounts = list(counts) if counts is not None else [s.amount(len(o)) for s, o in zip(sources, offsets)]
    picks = []  # (source index, line number, copy number)
    for i, (o, k) in enumerate(zip(offsets, amounts)):
        seen: Dict[int, int] = {}
        for line in draw(len(o), k, rng):
            copy = seen.get(line, 0)
            seen[line] = copy + 1
            picks.append((i, line, copy))
    rng.shuffle(picks)
    files = [open(s.path, "rb") for s in sources]
    try:
        with JsonlWriter(out) as writer:
            for i, line, copy in tqdm(picks, desc="mix", unit="rec", disable=not progress):
                files[i].seek(offsets[i][line])
                record = json.loads(files[i].readline())
                if copy:
                    record["id"] = f"{record['id']}#r{copy}"
                writer.write(record)
    finally:
        for f in files:
            f.close()
    taken = {s.path: k for s, k in zip(sources, amounts)}
    logger.info("mixture %s: %s", out, taken)
    return taken
