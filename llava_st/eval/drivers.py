"""Evaluation drivers: predict a benchmark with a Grounder, append predictions as they come, score.

A run writes into one output directory:
    predictions.rank{R}-of-{W}.jsonl   one line per sample: {"id", "split", "task", "tube" or None, "status"}
    metrics.json                        the metrics (rank 0, after every shard is done)
    table.md                            the metrics in the layout of the paper's Tables 2-6 (percent)
    viz/                                drawn tubes of the first N samples, when asked
A killed run started again with the same arguments skips the ids already written and ends with the same
metrics. Shards: sample k goes to rank k % world_size (ranks from torchrun's RANK / WORLD_SIZE, or given);
rank 0 waits for the others (torch.distributed barrier when a process group is up) and merges all files.
Any Grounder works (llava_st.api or the LLaVA-NeXT host): ground(video, descriptions, frames) and
ground_image(image, descriptions) returning tubes (core.tube contract). A sample whose answer cannot be
parsed, or whose video cannot be read, is written with its status, scored 0, and the run goes on.

Bad input never stops a run: test files are JSONL or JSON lists (data.jsonl.iter_records); a line that
is not a record, a record without an id, or a record the validator rejects (data.schema.validate_record,
without the conversation checks; e.g. `xyxy` strings, a span "abc") becomes a "bad record" row naming
the file and line or the id and field, scored 0 (counted in `errors`); media paths follow the one
data-root rule (data.paths.resolve_media). On resume, a predictions row that is not a well-formed row
({"id": str, "status": str, "tube": a tube or None}) is ignored with a warning and predicted again.
"""

import glob
import inspect
import json
import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from ..data.jsonl import JsonlWriter, iter_lines, iter_records
from ..data.paths import resolve_media, show_id
from ..data.schema import validate_record
from . import metrics as M

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: its task, the splits it reports (in table order) and the paper table it follows."""

    name: str
    task: str
    splits: Tuple[str, ...]
    title: str
    by_sentence_type: bool = False
    # The paper's STVG tables follow TubeDETR's evaluation (SpaceVLLM §4: "Following [13, 37, 47]").
    convention: M.STVGConvention = field(default=M.HCSTVG_OFFICIAL)
    didemo: bool = False  # VTG scored as DiDeMo: 5-s chunks, best 3 of the records' `annotator_spans`


BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark("hcstvg-v1", "stvg", ("test",), "HCSTVG-v1 test (paper Table 2)", convention=M.TUBEDETR),
        Benchmark("hcstvg-v2", "stvg", ("val",), "HCSTVG-v2 val (paper Table 3)", convention=M.TUBEDETR),
        Benchmark("vidstg", "stvg", ("test",), "VidSTG test (paper Table 4)", by_sentence_type=True, convention=M.TUBEDETR),
        Benchmark("charades-sta", "vtg", ("test",), "Charades-STA test (paper Table 5)"),
        Benchmark("didemo", "vtg", ("test",), "DiDeMo test", didemo=True),
        Benchmark("refcoco", "rec", ("val", "testA", "testB"), "RefCOCO (paper Table 6)"),
        Benchmark("refcoco+", "rec", ("val", "testA", "testB"), "RefCOCO+ (paper Table 6)"),
        Benchmark("refcocog", "rec", ("val", "test"), "RefCOCOg umd (paper Table 6)"),
        Benchmark("stvg", "stvg", ("test",), "STVG"),
        Benchmark("vtg", "vtg", ("test",), "VTG"),
        Benchmark("rec", "rec", ("test",), "REC"),
    )
}


# Placeholder records for entries of a test file that are not usable records carry their problem here.
LOAD_ERROR = "_load_error"
# Record tasks a benchmark task can evaluate (an STVG record also has a VTG span).
EVALUABLE = {"stvg": ("stvg",), "vtg": ("vtg", "stvg"), "rec": ("rec",)}


def load_records(path) -> List[dict]:
    """Every record of a Uni-STG .json (list) or .jsonl test file, in order. An entry that is not a record
    (invalid JSON, not an object) or has no usable id becomes a placeholder {"id": "<file>:<line N>",
    LOAD_ERROR: why}, so it is reported and scored 0 like any bad record and the rest still loads.
    Raises data.jsonl.DataFileError (a ValueError naming the file) when the file cannot be read at all."""
    path = Path(path)
    records = []
    for where, record, error in iter_records(path):
        if error is None and not _usable_id(record.get("id")):
            error = f"{where}: id=? field=id: missing or not a string/integer"
        if error is not None:
            log.warning("%s: %s", path, error)
            records.append({"id": f"{path.name}:{where}", LOAD_ERROR: f"{path}: {error}"})
        else:
            records.append(record)
    return records


def _usable_id(rid) -> bool:
    return (isinstance(rid, str) and rid != "") or (isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) < 10**100)


def record_problem(record: dict, task: str, data_root=None) -> Optional[str]:
    """Why a record cannot be evaluated for `task` (naming id and field), or None when it can: the one
    validator (data.schema.validate_record, conversations not needed), the record's task against the
    benchmark's, and with `data_root` the data-root path rule."""
    if LOAD_ERROR in record:
        return record[LOAD_ERROR]
    if record.get("task") not in EVALUABLE[task]:
        wanted, got = " or ".join(EVALUABLE[task]), str(record.get("task"))[:40]
        return f"id={show_id(record.get('id'))} field=task: a {task} benchmark evaluates {wanted} records, got {got!r}"
    problems = validate_record(record, data_root, conversations=False)
    if not problems:
        return None
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def check_record(record: dict, task: str) -> Optional[str]:
    """record_problem without the path check (kept for callers of the earlier name)."""
    return record_problem(record, task)


def _media_key(task: str) -> str:
    return "image" if task == "rec" else "video"


# --------------------------------------------------------------------------------------------- predict


def ground_for_task(grounder, task: str, path: str, descriptions: List[str], frames: Optional[int] = None) -> List[dict]:
    """One tube per description with the Grounder call of `task`: ground_image for REC, ground for
    STVG/VTG (with the VTG instruction where the host's ground takes a `task`)."""
    if task == "rec":
        return grounder.ground_image(path, descriptions)
    if task == "vtg" and "task" in inspect.signature(grounder.ground).parameters:
        return grounder.ground(path, descriptions, frames=frames, task="vtg")
    return grounder.ground(path, descriptions, frames=frames)


def predict(
    grounder,
    samples: Sequence[Tuple[str, dict]],
    task: str,
    data_root,
    out_dir,
    rank: int = 0,
    world_size: int = 1,
    frames: Optional[int] = None,
    progress: bool = True,
) -> Path:
    """Predict this rank's shard of `samples` ((split, record) pairs) into its JSONL, skipping ids already
    there. Records of one video are grounded in one call (the video prefix is computed once).
    Returns the JSONL path."""
    out = Path(out_dir) / f"predictions.rank{rank}-of-{world_size}.jsonl"
    done = set(_read_rows(out, warn=False)) if out.exists() else set()  # merge_predictions warns about the rest
    mine = [s for k, s in enumerate(samples) if k % world_size == rank and str(s[1]["id"]) not in done]
    bad: List[dict] = []
    groups: "OrderedDict[str, List[Tuple[str, dict]]]" = OrderedDict()
    for split, record in mine:
        problem = record_problem(record, task, data_root)
        if problem:
            log.warning("bad record: %s", problem)
            bad.append(_row(split, record, task, None, f"bad record: {problem}"))
            continue
        media = resolve_media(data_root, record[_media_key(task)], record["id"], _media_key(task))  # checked above
        groups.setdefault(str(media), []).append((split, record))
    bar = tqdm(total=len(mine), desc=f"{task} rank {rank}/{world_size}", disable=not progress or rank != 0)
    with JsonlWriter(out, append=True) as writer:
        for row in bad:
            writer.write(row)
        bar.update(len(bad))
        for media, group in groups.items():
            for row in _predict_rows(grounder, task, media, group, frames):
                writer.write(row)
            bar.update(len(group))
    bar.close()
    return out


def _predict_rows(grounder, task, media: str, valid, frames) -> List[dict]:
    rows = []
    try:
        tubes = ground_for_task(grounder, task, media, [r["caption"] for _, r in valid], frames)
    except Exception as e:  # a missing/corrupt file or a model error loses this group only
        log.warning("samples %s: prediction failed: %s", [r["id"] for _, r in valid], e)
        return rows + [_row(s, r, task, None, f"error: {type(e).__name__}: {e}") for s, r in valid]
    for (split, record), tube in zip(valid, tubes):
        status = tube.get("status", "ok")
        if status != "ok":
            log.info("sample %s: %s", record["id"], status)
        rows.append(_row(split, record, task, tube, status))
    return rows


def _row(split: str, record: dict, task: str, tube: Optional[dict], status: str) -> dict:
    return {"id": str(record["id"]), "split": split, "task": task, "tube": tube, "status": status}


def merge_predictions(out_dir) -> Dict[str, dict]:
    """All well-formed rows of every rank's JSONL in `out_dir`, by id (a cut-off last line and malformed
    rows are ignored, with a warning naming file and line)."""
    rows = {}
    for path in sorted(glob.glob(str(Path(out_dir) / "predictions.rank*-of-*.jsonl"))):
        rows.update(_read_rows(path))
    return rows


def _read_rows(path, warn: bool = True) -> Dict[str, dict]:
    """The well-formed prediction rows of one JSONL file by id; every other line is skipped (with a warning
    when `warn`; a resumed run predicts those samples again)."""
    rows, cut = {}, None
    for line_no, row, error in iter_lines(path):
        if cut is not None and warn:  # an unreadable line with more after it: not a cut-off last line
            log.warning("%s: ignored prediction row: %s", path, cut)
        cut = None
        if error is not None:
            cut = error  # the last line cut off by a crash is expected: no warning for it
        elif row_problem(row) is not None:
            if warn:
                log.warning("%s: line %d: ignored prediction row: %s", path, line_no, row_problem(row))
        else:
            rows[row["id"]] = row
    return rows


def row_problem(row) -> Optional[str]:
    """Why `row` is not a prediction row as `predict` writes it ({"id": str, "status": str, "tube": a tube
    (core.tube: span None or two finite numbers, frames [{"t", "box_xyxy"}]) or None}), or None."""
    if not isinstance(row, dict):
        return "not an object"
    if not isinstance(row.get("id"), str):
        return "field=id: missing or not a string"
    if not isinstance(row.get("status"), str):
        return f"id={show_id(row['id'])} field=status: missing or not a string"
    tube = row.get("tube")
    if tube is None:
        return None
    if not isinstance(tube, dict):
        return f"id={show_id(row['id'])} field=tube: must be an object or null"
    span = tube.get("span")
    if span is not None and not (isinstance(span, list) and len(span) == 2 and all(_finite(x) for x in span)):
        return f"id={show_id(row['id'])} field=tube.span: must be null or two finite numbers"
    if not isinstance(tube.get("status", "ok"), str):
        return f"id={show_id(row['id'])} field=tube.status: must be a string"
    frames = tube.get("frames", [])
    if not isinstance(frames, list):
        return f"id={show_id(row['id'])} field=tube.frames: must be a list"
    for i, frame in enumerate(frames):
        box = frame.get("box_xyxy") if isinstance(frame, dict) else None
        box_ok = isinstance(box, list) and len(box) == 4 and all(_finite(v) for v in box)
        if not (box_ok and _finite(frame.get("t"))):
            return f"id={show_id(row['id'])} field=tube.frames[{i}]: needs a finite t and box_xyxy of four finite numbers"
    return None


def _finite(x) -> bool:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


# ----------------------------------------------------------------------------------------------- score


def _pred_box(tube: Optional[dict]):
    if not tube or tube.get("status", "ok") != "ok" or not tube.get("frames"):
        return None
    return tube["frames"][0]["box_xyxy"]


def _pred_span(tube: Optional[dict]):
    if not tube or tube.get("status", "ok") != "ok":
        return None
    return tube.get("span")


def score(
    benchmark: Benchmark, samples: Sequence[Tuple[str, dict]], rows: Dict[str, dict], convention: Optional[M.STVGConvention] = None
) -> dict:
    """Metrics of `benchmark` over `samples` ((split, record)); a sample with no row, a failed prediction
    or an unparsable answer scores 0. Returns {"benchmark", "task", "convention", "splits": {split:
    {group: metrics}}, "counts": {...}} with group "all" (and "declarative"/"interrogative" for VidSTG)."""
    convention = convention or benchmark.convention
    by_group: Dict[Tuple[str, str], list] = {}
    counts = {"samples": len(samples), "missing": 0, "unparsable": 0, "errors": 0}
    valid = []
    for split, record in samples:
        row = rows.get(str(record["id"]))
        if record_problem(record, benchmark.task) is not None:  # scored 0, whatever the row says
            counts["errors"] += 1
            tube, gt = None, {"id": record.get("id")}  # no ground truth to read
        else:
            if row is None:
                counts["missing"] += 1
            elif row["status"].startswith(("error", "bad record")):
                counts["errors"] += 1
            elif row["status"] != "ok":
                counts["unparsable"] += 1
            tube, gt = (None if row is None or row["status"] != "ok" else row["tube"]), record
            valid.append(record)
        groups = ["all"]
        if benchmark.by_sentence_type:
            sentence_type = record.get("sentence_type")
            groups.append(sentence_type if isinstance(sentence_type, str) and sentence_type else "unknown")
        for group in groups:
            by_group.setdefault((split, group), []).append((gt, tube))
    out = {"benchmark": benchmark.name, "task": benchmark.task, "splits": {}, "counts": counts}
    stvg_gt = {}
    if benchmark.task == "stvg":
        out["convention"] = convention.describe()
        # Ground-truth boxes as arrays once per test set (by id(record)), not once per group scored.
        stvg_gt = dict(zip(map(id, valid), M.prepare_stvg_gt(valid)))
    for (split, group), pairs in by_group.items():
        out["splits"].setdefault(split, {})[group] = _score_pairs(benchmark, pairs, convention, stvg_gt)
    return out


def _score_pairs(benchmark: Benchmark, pairs, convention, stvg_gt: Dict[int, M.STVGGroundTruth]) -> dict:
    """Metrics of one group of (record, tube) pairs; stvg_gt: prepared ground truth of the STVG records
    that can be evaluated, by id(record) (the others score 0)."""
    task = benchmark.task
    if task == "stvg":
        gts = [stvg_gt.get(id(r)) for r, _ in pairs]
        scored = iter(M.score_stvg_many([(gt, t) for gt, (_, t) in zip(gts, pairs) if gt is not None], convention))
        return M.summarize_stvg([next(scored) if gt is not None else _zero() for gt in gts])
    if task == "vtg" and benchmark.didemo:
        annotators = [[M.didemo_chunks(a) for a in (r.get("annotator_spans") or [r.get("span") or (0.0, 0.0)])] for r, _ in pairs]
        return M.didemo_scores([M.didemo_chunks(_pred_span(t)) for _, t in pairs], annotators)
    if task == "vtg":
        ious = M.vtg_ious([_pred_span(t) for _, t in pairs], [r.get("span") or (0.0, 0.0) for r, _ in pairs])
        return M.summarize_vtg(ious)
    gt = [(r.get("boxes") or [{"xyxy": [0, 0, 0, 0]}])[0]["xyxy"] for r, _ in pairs]
    return M.summarize_rec(M.rec_ious([_pred_box(t) for _, t in pairs], gt))


def _zero() -> dict:
    return {"tiou": 0.0, "viou": 0.0, "gt_viou": 0.0}


# ----------------------------------------------------------------------------------------------- table


def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def markdown_table(benchmark: Benchmark, result: dict, model: str = "llava_st") -> str:
    """The metrics as a markdown table in the layout of the paper's table for this benchmark (percent)."""
    splits = result["splits"]
    lines = [f"**{benchmark.title}**", ""]
    if benchmark.task == "stvg":
        cols = ["m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5"]
        split = next(iter(splits.values())) if splits else {}
        groups = ["declarative", "interrogative"] if benchmark.by_sentence_type else ["all"]
        header = [f"{g.capitalize()} {c}" if benchmark.by_sentence_type else c for g in groups for c in cols]
        values = [_pct(split.get(g, {}).get(c)) for g in groups for c in cols]
    elif benchmark.task == "vtg":
        cols = ["R@1", "mIoU"] if benchmark.didemo else [f"R@1,IoU={m:g}" for m in M.VTG_THRESHOLDS] + ["mIoU"]
        header, values = cols, [_pct(next(iter(splits.values()), {}).get("all", {}).get(c)) for c in cols]
    else:
        header = list(splits)
        values = [_pct(splits[s]["all"].get("Acc@0.5")) for s in header]
    lines.append("| Model | " + " | ".join(header) + " |")
    lines.append("|---|" + "---|" * len(header))
    lines.append(f"| {model} | " + " | ".join(values) + " |")
    c = result["counts"]
    lines += [
        "",
        f"{c['samples']} samples; {c['unparsable']} unparsable answers, {c['errors']} failed, {c['missing']} missing (all scored 0).",
    ]
    if "convention" in result:
        lines.append(f"Frames: {result['convention']}.")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------- evaluate


def dist_info(rank: Optional[int] = None, world_size: Optional[int] = None) -> Tuple[int, int]:
    """(rank, world_size): given values, else torchrun's RANK / WORLD_SIZE, else (0, 1)."""
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    return rank, world_size


def evaluate(
    grounder,
    benchmark: Benchmark,
    split_files: Dict[str, str],
    data_root,
    out_dir,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
    frames: Optional[int] = None,
    convention: Optional[M.STVGConvention] = None,
    viz: int = 0,
    progress: bool = True,
    model_name: str = "llava_st",
) -> Optional[dict]:
    """Predict this rank's shard, then (rank 0) merge, score, and write metrics.json and table.md.

    split_files: {split name: Uni-STG .json/.jsonl}. Returns the metrics on rank 0 with every shard
    done, else None (a rank without a process group cannot wait for the others: merge later with
    `finish`)."""
    rank, world_size = dist_info(rank, world_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = [(split, r) for split, path in split_files.items() for r in load_records(path)]
    if grounder is not None:
        predict(grounder, samples, benchmark.task, data_root, out_dir, rank, world_size, frames, progress)
    if world_size > 1:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return None
        dist.barrier()
    if rank != 0:
        return None
    return finish(benchmark, samples, data_root, out_dir, convention, viz, model_name)


def finish(benchmark: Benchmark, samples, data_root, out_dir, convention=None, viz: int = 0, model_name: str = "llava_st") -> dict:
    """Merge every shard's predictions in `out_dir`, score, write metrics.json, table.md (and viz)."""
    out_dir = Path(out_dir)
    rows = merge_predictions(out_dir)
    result = score(benchmark, samples, rows, convention)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    (out_dir / "table.md").write_text(markdown_table(benchmark, result, model_name))
    if viz:
        _draw_first(samples[:viz], rows, benchmark.task, Path(data_root), out_dir / "viz")
    return result


def _draw_first(samples, rows, task: str, data_root: Path, viz_dir: Path) -> None:
    from .viz import draw_sample

    for _, record in samples:
        row = rows.get(str(record["id"]))
        try:
            draw_sample(record, row["tube"] if row else None, data_root, viz_dir)
        except Exception as e:  # drawing is a side output: never lose the metrics over it
            log.warning("sample %s: could not draw: %s", record.get("id"), e)
