"""The whole STVG synthesis pipeline (paper §3.2.1): Analyzer -> Annotator -> Refiner -> Filter.

Input: Uni-STG records with a video, a caption and a span (e.g. converted Charades-STA, DiDeMo, TACoS).
Each stage writes `<workdir>/<n>_<stage>.jsonl` (+ `.dropped.jsonl`), so a rerun resumes at the first
unfinished record of the first unfinished stage; the last file is the synthesised stvg data. With
world_size > 1 (torchrun), each rank runs its shard and rank 0 merges into the same files (synth.shards).
"""

from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from .stage import StageReport


def stage_outputs(names: Sequence[str], workdir) -> List[Path]:
    return [Path(workdir) / f"{i}_{name}.jsonl" for i, name in enumerate(names, 1)]


def run_pipeline(
    stages: Sequence[Tuple[str, Callable[[dict], dict]]],
    in_path,
    workdir,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> Optional[List[StageReport]]:
    """Run (name, stage) pairs in order, each over the previous one's output; returns their reports
    (with world_size > 1: the merged reports on rank 0, None on the other ranks)."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    from .shards import run_sharded

    return run_sharded(stages, in_path, stage_outputs([name for name, _ in stages], workdir), rank, world_size, progress)
