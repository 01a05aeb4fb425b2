"""The whole STVG synthesis pipeline (paper §3.2.1): Analyzer -> Annotator -> Refiner -> Filter.

Input: Uni-STG records with a video, a caption and a span (e.g. converted Charades-STA, DiDeMo, TACoS).
Each stage writes `<workdir>/<n>_<stage>.jsonl` (+ `.dropped.jsonl`), so a rerun resumes at the first
unfinished record of the first unfinished stage; the last file is the synthesised stvg data.
"""

from pathlib import Path
from typing import Callable, List, Sequence, Tuple

from .stage import StageReport, run_stage


def run_pipeline(
    stages: Sequence[Tuple[str, Callable[[dict], dict]]], in_path, workdir, progress: bool = True
) -> List[StageReport]:
    """Run (name, stage) pairs in order, each over the previous one's output; returns their reports."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    reports, source = [], Path(in_path)
    for i, (name, stage) in enumerate(stages, 1):
        out = Path(workdir) / f"{i}_{name}.jsonl"
        reports.append(run_stage(stage, source, out, name=name, progress=progress))
        source = out
    return reports
