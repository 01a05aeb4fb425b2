"""Training mixtures: draw records from several Uni-STG JSONL (or JSON list) files by counts or ratios,
shuffled, deterministic by seed, without loading JSONL files (only the offsets of good lines are kept).

Every input record is checked first, and a bad one is left out with one message naming its file, its line
(or record number in a JSON list) and its id and fields: a line that is not UTF-8 or not JSON, a record
that is not a JSON object, an unusable or duplicate id (across all sources), an unknown task, a media path
that is absolute, has `..` or (with `data_root`) leads out of it through a link, and any field the record
has that the schema refuses (llava_st.data.schema). A field a record lacks is left to the training loader
(`strict=True` refuses it here too). Counts and ratios apply to the good records. A source that cannot be
read at all (not found, a directory, unreadable, UTF-16, a broken JSON list) is one error naming it, and
nothing is written.

A source is `PATH` (all records), `PATH@COUNT` (an integer number of records) or `PATH@RATIO` (a float:
that fraction of the file; above 1 repeats records). Asking for more records than a file has repeats
every record floor(k / n) times and draws the rest without replacement; repeated records get the id
suffix `#r<copy>` so ids stay unique.

`TABLE1` is the paper's Table 1 mixture (samples per task); `table1_counts` splits each task's count
over the files of that task in proportion to their sizes, optionally scaled down.
"""

import logging
import random
import re
from array import array
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from tqdm import tqdm

from .jsonl import BOM, DataFileError, JsonlWriter, _open, is_json_list, iter_records, parse_line
from .paths import show_id
from .schema import validate_record

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


class _Pool:
    """The good records of one source: byte offsets of their lines (JSONL) or the records (a JSON list)."""

    def __init__(self, path: str):
        self.path, self.offsets, self.records, self.task = path, array("q"), None, None

    def __len__(self) -> int:
        return len(self.records) if self.records is not None else len(self.offsets)

    def get(self, f, i: int) -> dict:
        if self.records is not None:
            return self.records[i]
        f.seek(self.offsets[i])
        record, error = parse_line(f.readline(), "line")
        if error:
            raise DataFileError(f"{self.path}: changed while mixing ({error})")
        return record


def _entries(path: str, pool: _Pool):
    """(where, record or None, error or None) of every record of `path`, filling `pool.offsets` with the
    offset of each JSONL line as it is read (the caller removes the bad ones)."""
    if is_json_list(path):
        entries = list(iter_records(path))
        if not entries or entries[0][0].startswith("record"):
            pool.records = []
            yield from entries
            return
    with _open(path) as f:
        pos = 0
        for line_no, raw in enumerate(f, 1):
            start, pos = pos, pos + len(raw)
            if line_no == 1 and raw.startswith(BOM):
                raw, start = raw[len(BOM):], start + len(BOM)
            if not raw.strip():
                continue
            record, error = parse_line(raw, f"line {line_no}")
            pool.offsets.append(start)
            yield f"line {line_no}", record, error


def _present(record: dict, problem: str) -> bool:
    """Whether a validator message is about a field the record has (id and task always count)."""
    name = problem.partition(" field=")[2].partition(": ")[0]
    root = re.split(r"[\[.]", name, maxsplit=1)[0]
    if root in ("id", "task", "record"):
        return True
    if root == "video/image":
        return "video" in record or "image" in record
    return root in record


def record_problems(record: dict, data_root=None, strict: bool = False) -> List[str]:
    """The validator's problems of one record that mixing refuses (module docstring)."""
    problems = validate_record(record, data_root)
    return problems if strict else [p for p in problems if _present(record, p)]


@dataclass
class MixReport:
    """taken: records drawn per source path; records / rejected: input records read / left out (each
    with one message); file_errors: sources that could not be read (then nothing is written)."""

    taken: Dict[str, int] = field(default_factory=dict)
    records: int = 0
    rejected: int = 0
    written: int = 0
    file_errors: List[str] = field(default_factory=list)


def scan(paths: Sequence[str], report: MixReport, data_root=None, strict: bool = False,
         on_problem: Callable[[str], None] = logger.warning) -> List[Optional[_Pool]]:
    """The good records of every source (None for a source that cannot be read, named in report.file_errors);
    each bad record is passed to `on_problem` as one message."""
    pools: List[Optional[_Pool]] = []
    seen: Dict[str, str] = {}
    for path in paths:
        pool = _Pool(path)
        try:
            for where, record, error in _entries(path, pool):
                report.records += 1
                if error is None:
                    problems = record_problems(record, data_root, strict)
                    rid = record.get("id")
                    if not problems:
                        key = str(rid)
                        if key in seen:
                            problems = [f"id={show_id(rid)} field=id: duplicate id (first at {seen[key]})"]
                        else:
                            seen[key] = f"{path}: {where}"
                    error = f"{where}: " + "; ".join(problems) if problems else None
                if error is not None:
                    report.rejected += 1
                    on_problem(f"{path}: {error}")
                    if pool.records is None:
                        pool.offsets.pop()
                    continue
                if pool.records is not None:
                    pool.records.append(record)
                if pool.task is None:
                    pool.task = record.get("task")
        except DataFileError as exc:
            report.file_errors.append(str(exc))
            pool = None
        pools.append(pool)
    return pools


def mix_files(
    sources: Sequence[MixSource],
    out: str,
    seed: int = 0,
    counts: Optional[Sequence[int]] = None,
    table1_scale: Optional[float] = None,
    data_root=None,
    strict: bool = False,
    progress: bool = True,
    on_problem: Callable[[str], None] = logger.warning,
) -> MixReport:
    """Check every source (module docstring), then write the shuffled mixture of their good records to
    `out` (JSONL). `counts` overrides the amounts of `sources`; `table1_scale`: the paper's Table 1 counts
    x that scale (`table1_counts`, each file's task from its first good record). A source that cannot be
    read leaves `out` untouched (report.file_errors)."""
    report = MixReport()
    pools = scan([s.path for s in sources], report, data_root, strict, on_problem)
    if report.file_errors:
        return report
    if table1_scale is not None:
        empty = [p.path for p in pools if not len(p)]
        if empty:
            raise ValueError(f"{empty[0]}: no valid record, so no task for --table1")
        counts = table1_counts([p.path for p in pools], [len(p) for p in pools], [p.task for p in pools], table1_scale)
    amounts = list(counts) if counts is not None else [s.amount(len(p)) for s, p in zip(sources, pools)]
    rng = random.Random(seed)
    picks = []  # (source index, record number, copy number)
    for i, (pool, k) in enumerate(zip(pools, amounts)):
        if k and not len(pool):
            raise ValueError(f"{pool.path}: no valid record to draw {k} from")
        seen: Dict[int, int] = {}
        for n in draw(len(pool), k, rng):
            copy = seen.get(n, 0)
            seen[n] = copy + 1
            picks.append((i, n, copy))
    rng.shuffle(picks)
    files = [open(p.path, "rb") if p.records is None else None for p in pools]
    try:
        with JsonlWriter(out) as writer:
            for i, n, copy in tqdm(picks, desc="mix", unit="rec", disable=not progress):
                record = pools[i].get(files[i], n)
                if copy:
                    record = {**record, "id": f"{record['id']}#r{copy}"}
                writer.write(record)
            report.written = writer.count
    finally:
        for f in files:
            if f is not None:
                f.close()
    report.taken = {s.path: k for s, k in zip(sources, amounts)}
    logger.info("mixture %s: %s", out, report.taken)
    return report


def mix(
    sources: Sequence[MixSource], out: str, seed: int = 0, counts: Optional[Sequence[int]] = None, progress: bool = True, **kwargs
) -> Dict[str, int]:
    """Write the shuffled mixture to `out` (JSONL); returns records taken per source path (`mix_files`,
    whose keyword arguments it passes on). A source that cannot be read raises DataFileError naming it."""
    report = mix_files(sources, out, seed=seed, counts=counts, progress=progress, **kwargs)
    if report.file_errors:
        raise DataFileError("; ".join(report.file_errors))
    return report.taken
