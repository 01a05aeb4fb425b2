"""Sharded synthesis over torchrun ranks, with the eval drivers' conventions (eval.drivers).

    torchrun --nproc_per_node N -m llava_st.data.synth run IN WORKDIR ...   (or --nnodes, --node_rank ...)

Ranks come from torchrun's RANK / WORLD_SIZE (or --rank / --world-size). Input record k (k-th non-blank
line) goes to rank k % world_size. Each rank runs every stage over its own records and writes its own
files, `<n>_<stage>.rank{R}-of-{W}.jsonl` (+ `.dropped.jsonl`), each resumable as in `stage.run_stage`,
then `<last output>.rank{R}-of-{W}.done.json` with its reports. Rank 0 waits for the others
(torch.distributed barrier over gloo when a process group is up), then merges every stage into the
plain files of a one-process run (`<n>_<stage>.jsonl` and its `.dropped.jsonl`), in input order, with
the drop counts summed. The merged files are byte for byte the files one process would write (an id met
twice counts where it first occurs in the input, as in one process), so a rank killed mid-run and
started again (same world size) ends with the same output as an uninterrupted run. Without a process
group (ranks started by hand), rank 0 merges only once every rank's done file is there; rerun rank 0
after the others finish to merge (it resumes past everything). `--device cuda` means the local rank's
GPU (`cuda:LOCAL_RANK`).
"""

import json
import logging
import os
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .stage import StageReport, dropped_path, input_entries, run_stage

logger = logging.getLogger(__name__)


def dist_info(rank: Optional[int] = None, world_size: Optional[int] = None) -> Tuple[int, int]:
    """(rank, world_size) as the eval drivers read them: given values, else RANK / WORLD_SIZE, else (0, 1)."""
    if rank is None and world_size is None and "WORLD_SIZE" not in os.environ and "RANK" not in os.environ:
        return 0, 1
    from ...eval.drivers import dist_info as drivers_dist_info

    return drivers_dist_info(rank, world_size)


def rank_device(device: str) -> str:
    """`cuda` (no index) under torchrun is the local rank's GPU, cuda:LOCAL_RANK; anything else as given."""
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if device == "cuda" else device


def init_distributed(world_size: int, timeout_hours: float = 72.0) -> bool:
    """Start a gloo process group under torchrun (MASTER_ADDR set) so that rank 0 can wait for the other
    shards; True when this call started it. The barrier waits up to `timeout_hours` (ranks finish their
    shards at different times)."""
    if world_size <= 1 or "MASTER_ADDR" not in os.environ:
        return False
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        return False
    dist.init_process_group("gloo", timeout=timedelta(hours=timeout_hours))
    return True


def shard_path(out, rank: int, world_size: int) -> Path:
    """`x/1_analyze.jsonl` -> `x/1_analyze.rank0-of-2.jsonl` (a name without .jsonl gains the suffix)."""
    out = Path(out)
    stem, ext = (out.name[: -len(".jsonl")], ".jsonl") if out.name.endswith(".jsonl") else (out.name, "")
    return out.with_name(f"{stem}.rank{rank}-of-{world_size}{ext}")


def done_path(outputs: Sequence, rank: int, world_size: int) -> Path:
    return Path(str(shard_path(outputs[-1], rank, world_size)) + ".done.json")


def run_sharded(
    stages: Sequence[Tuple[str, Callable[[dict], dict]]],
    in_path,
    outputs: Sequence,
    rank: int,
    world_size: int,
    progress: bool = True,
) -> Optional[List[StageReport]]:
    """Run this rank's shard of `in_path` through `stages` ((name, stage) pairs; stage i writes the shard
    file of outputs[i]); on rank 0, once every shard is done, merge. Returns the merged reports on rank 0
    after a merge, else None (this rank's own reports are logged)."""
    outputs = [Path(o) for o in outputs]
    if world_size <= 1:  # one process: the plain files directly
        reports, source = [], Path(in_path)
        for (name, stage), out in zip(stages, outputs):
            reports.append(run_stage(stage, source, out, name=name, progress=progress))
            source = out
        return reports
    marker = done_path(outputs, rank, world_size)
    marker.unlink(missing_ok=True)
    start = time.perf_counter()
    reports, source = [], Path(in_path)
    for i, ((name, stage), out) in enumerate(zip(stages, outputs)):
        target = shard_path(out, rank, world_size)
        shard = (rank, world_size) if i == 0 else None
        reports.append(run_stage(stage, source, target, name=name, progress=progress and rank == 0, shard=shard))
        source = target
    seconds = time.perf_counter() - start
    marker.write_text(json.dumps({"rank": rank, "world_size": world_size, "seconds": round(seconds, 3),
                                  "stages": [_report_json(r) for r in reports]}) + "\n")
    for r in reports:
        logger.info("rank %d/%d shard: %s", rank, world_size, r.summary())
    _barrier(world_size)
    if rank != 0:
        return None
    missing = [r for r in range(world_size) if not done_path(outputs, r, world_size).is_file()]
    if missing:
        logger.warning("ranks %s have not finished their shards: nothing merged; rerun rank 0 once they have", missing)
        return None
    return merge_shards(in_path, [name for name, _ in stages], outputs, world_size)


def _barrier(world_size: int) -> None:
    if world_size <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _report_json(r: StageReport) -> dict:
    return {"name": r.name, "kept": r.kept, "dropped": dict(r.dropped), "resumed": r.resumed, "seconds": r.seconds}


def _raw_rows(path: Path) -> Iterator[Tuple[str, bytes]]:
    """(str id, the line's bytes) of every row of a finished shard file."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                yield str(json.loads(raw).get("id")), raw


def _winners(in_path, world_size: int) -> Tuple[List[str], Dict[str, int], int]:
    """Ids in input order (first occurrences; unreadable lines as `line<N>`, stage.input_entries), the
    rank holding each, and how many later records repeat an id."""
    order, winner, duplicates = [], {}, 0
    for k, (_, rid, _, _) in enumerate(input_entries(in_path)):
        if rid not in winner:
            winner[rid] = k % world_size
            order.append(rid)
        else:
            duplicates += 1
    return order, winner, duplicates


def _merge_file(order, winner, shards: List[Path], merged: Path) -> Counter:
    """Write the rows of `shards` (one file per rank) to `merged` in input order (written aside, then
    renamed); returns the rows counted by their `reason` (None for kept records)."""
    cursors = [_raw_rows(p) for p in shards]
    heads: List[Optional[Tuple[str, bytes]]] = [None] * len(shards)

    def head(r):
        while True:
            if heads[r] is None:
                heads[r] = next(cursors[r], None)
                if heads[r] is None:
                    return None
            if winner.get(heads[r][0]) == r:
                return heads[r]
            if heads[r][0] not in winner:
                raise ValueError(f"{shards[r]}: id {heads[r][0]!r} is not in the input (shards of another input?)")
            heads[r] = None  # a later duplicate of an id first met on another rank: one process skips it

    counts: Counter = Counter()
    tmp = merged.with_name(merged.name + ".merging")
    with open(tmp, "wb") as f:
        for rid in order:
            r = winner[rid]
            h = head(r)
            if h is not None and h[0] == rid:
                f.write(h[1])
                counts[json.loads(h[1]).get("reason")] += 1
                heads[r] = None
        for r in range(len(shards)):
            if head(r) is not None:
                raise ValueError(f"{shards[r]}: rows out of input order (shards of another input?)")
    os.replace(tmp, merged)
    return counts


def merge_shards(in_path, names: Sequence[str], outputs: Sequence, world_size: int) -> List[StageReport]:
    """Merge every rank's files of each stage into `outputs` (and their dropped files), in input order;
    reports with the merged counts and the ranks' resumed counts summed."""
    order, winner, duplicates = _winners(in_path, world_size)
    markers = [json.loads(done_path(outputs, r, world_size).read_text()) for r in range(world_size)]
    reports = []
    for i, (name, out) in enumerate(zip(names, outputs)):
        out = Path(out)
        shards = [shard_path(out, r, world_size) for r in range(world_size)]
        kept = _merge_file(order, winner, shards, out)
        dropped = _merge_file(order, winner, [dropped_path(s) for s in shards], dropped_path(out))
        resumed = sum(m["stages"][i]["resumed"] for m in markers if i < len(m["stages"]))
        reports.append(StageReport(name, kept=sum(kept.values()), dropped=Counter(dropped), resumed=resumed,
                                   duplicates=duplicates if i == 0 else 0))
    return reports
