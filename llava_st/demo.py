"""`llava-st demo` (`make demo`): the README's main job, and `--train-checkpoint` (`make demo-train`), which
retrains the committed demo checkpoint with its recipe (recipes.synthetic_stg).

The demo, on the CPU:
 1. generates held-out synthetic STG videos (data.synthetic, a seed the checkpoint never saw);
 2. loads the committed checkpoint (package data: llava_st/checkpoints/llava-st-demo, transformers host)
    with api.load_grounder, or the one given with --checkpoint;
 3. grounds every description and scores the tubes (eval.drivers: m_tIoU, m_vIoU, vIoU@0.3/0.5), writing
    tubes.json, metrics.json, table.md and mp4s with the predicted (green) and true (red) boxes;
 4. trains the checkpoint 30 steps on 4 new clips and plots the text and space losses (loss_curve.png).
Everything goes under demo_out/; a rerun reuses the videos, and the predictions made by the same weights.
"""

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

from .data.synthetic import write_split
from .recipes.synthetic_stg import (
    FRAMES,
    FROM_BASE_ST,
    HELD_OUT_SEED,
    VIDEOS,
    demo_recipe,
    demo_st,
    short_training,
    space_term,
    train_recipe,
)

log = logging.getLogger(__name__)

# The shipped checkpoint is package data: found the same way in a checkout and in an installed wheel.
CHECKPOINT = Path(str(resources.files("llava_st") / "checkpoints" / "llava-st-demo"))
OUT = Path("demo_out")
def _progress_logging():
    logging.basicConfig(level=logging.INFO, format="[llava-st demo] %(message)s")
    logging.getLogger("transformers").setLevel(logging.WARNING)


def evaluate_checkpoint(checkpoint, out_dir, num_videos: int = 40, seed: int = HELD_OUT_SEED, viz: int = 0, progress: bool = True,
                        frames: int = FRAMES, videos=VIDEOS) -> dict:
    """Ground `num_videos` held-out synthetic clips (of config `videos`, seed `seed`) with `checkpoint`,
    sampling `frames` frames per clip, and score them (eval.drivers; the official HC-STVG frame
    convention on every frame at 1 fps). Writes under `out_dir`: data/, eval/
    (predictions JSONL, metrics.json, table.md, viz/) and tubes.json. Returns the metrics dict."""
    from .api import load_grounder
    from .eval.drivers import BENCHMARKS, evaluate, merge_predictions

    out_dir = Path(out_dir)
    data = out_dir / "data"
    records = write_split(data, num_videos, seed, videos, "heldout", progress=progress)
    _forget_other_checkpoints(checkpoint, out_dir / "eval")
    grounder = load_grounder(str(checkpoint), frames=frames)
    result = evaluate(
        grounder,
        BENCHMARKS["stvg"],
        {"test": str(data / "heldout.json")},
        data,
        out_dir / "eval",
        frames=frames,
        viz=viz,
        progress=progress,
        model_name="llava-st demo",
    )
    rows = merge_predictions(out_dir / "eval")
    tubes = [dict(rows[r["id"]]["tube"] or {}, id=r["id"], caption=r["caption"]) for r in records if r["id"] in rows]
    (out_dir / "tubes.json").write_text(json.dumps(tubes, indent=1))
    return result


def _forget_other_checkpoints(checkpoint, eval_dir: Path) -> None:
    """Predictions in `eval_dir` are reused only if they came from these very weights: the SHA-256 of
    the checkpoint's model.safetensors is kept in eval_dir/checkpoint.json, and eval_dir is emptied when
    it differs (another checkpoint, or the same path retrained)."""
    import hashlib
    import shutil

    weights = Path(checkpoint) / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.is_file() else None
    stamp = {"checkpoint": str(Path(checkpoint).resolve()), "model.safetensors sha256": digest}
    stamp_path = eval_dir / "checkpoint.json"
    if eval_dir.exists() and (not stamp_path.is_file() or json.loads(stamp_path.read_text()) != stamp):
        log.info("predictions under %s came from other weights; grounding again", eval_dir)
        shutil.rmtree(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    stamp_path.write_text(json.dumps(stamp, indent=1))


# The short training's clips: 12 s instead of 8, so the 8 sampled frames fall at new times (0.0s, 1.6s,
# ...) and the spans to answer are new text for the checkpoint, while the boxes are the same task.

def _mean(rows, key) -> float:
    values = [key(r) for r in rows]
    return sum(values) / max(len(values), 1)


def run_demo(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (Path(args.checkpoint) / "config.json").is_file():
        print(f"llava-st demo: no checkpoint at {args.checkpoint} (no config.json): give one with --checkpoint DIR, "
              "or train it with `make demo-train` in a checkout", file=sys.stderr)
        return 2
    log.info("1/2 grounding %d held-out synthetic videos with %s", args.num_videos, args.checkpoint)
    result = evaluate_checkpoint(args.checkpoint, out, args.num_videos, args.seed, viz=args.viz)
    table = (out / "eval" / "table.md").read_text()
    print(table)
    overall = result["splits"]["test"] if "splits" in result else result
    log.info("metrics: %s", json.dumps(overall, sort_keys=True))
    log.info("wrote %s, %s and drawn tubes under %s", out / "tubes.json", out / "eval" / "table.md", out / "eval" / "viz")
    if args.train_steps > 0:
        log.info("2/2 a short training from the checkpoint (%d steps)", args.train_steps)
        rows = short_training(args.checkpoint, out, steps=args.train_steps)
        k = max(1, len(rows) // 5)
        first, last = rows[:k], rows[-k:]
        print(
            f"text loss {_mean(first, lambda r: r['loss_text']):.3f} -> {_mean(last, lambda r: r['loss_text']):.3f}; "
            f"space loss {_mean(first, space_term):.3f} -> {_mean(last, space_term):.3f} "
            f"(mean of the first and last {k} steps); curve: {out / 'loss_curve.png'}"
        )
    return 0


# What `make demo-train` scores the checkpoint on: the demo's 40 held-out videos, 100 (the first 40 the
# same), and 100 with up to 3 distractors instead of 2 (name -> (videos, clip config)).
RECIPE_EVALS = {"40 videos": (40, VIDEOS), "100 videos": (100, VIDEOS),
                "100 videos, 3 distractors": (100, replace(VIDEOS, max_distractors=3))}


def run_recipe(args) -> int:
    """Train the demo checkpoint with demo_recipe() into args.checkpoint (one process, fixed seeds),
    score it on RECIPE_EVALS, and write recipe.json beside the weights and args.results (the README's
    "Demo" table: python -m bench.readme_table)."""
    import hashlib

    began = time.time()
    recipe, st = demo_recipe(args.threads), demo_st(**FROM_BASE_ST)
    log.info("training the demo checkpoint into %s (%s)", args.checkpoint, recipe)
    info = train_recipe(args.checkpoint, recipe, st, data_dir=Path(args.out) / "recipe-data")  # not beside the package's checkpoint
    info["heldout"] = {}
    for name, (num, videos) in RECIPE_EVALS.items():
        folder = Path(args.out) / "recipe-eval" / name.replace(" ", "-").replace(",", "")
        metrics = evaluate_checkpoint(args.checkpoint, folder, num, args.seed, videos=videos)
        info["heldout"][name] = metrics["splits"]["test"]["all"]
        print(f"{name}:\n" + (folder / "eval" / "table.md").read_text())
    weights = Path(args.checkpoint, "model.safetensors")
    info["model.safetensors sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    Path(args.checkpoint, "recipe.json").write_text(json.dumps(info, indent=1, default=str))
    info["wall_seconds"] = round(time.time() - began, 1)  # data generation, training and the three evaluations
    summary = {k: v for k, v in info.items() if k != "log_history"}
    summary.update(name="demo_checkpoint", date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), held_out_seed=args.seed)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    log.info("trained in %.0f s; recipe, training log and held-out metrics in %s and %s", info["seconds"],
             Path(args.checkpoint, "recipe.json"), args.results)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="llava-st demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(CHECKPOINT), help="ST checkpoint directory (default: the committed demo checkpoint)")
    parser.add_argument("--out", default=str(OUT), help="output directory (default: demo_out)")
    parser.add_argument("--num-videos", type=int, default=40, help="held-out synthetic videos to ground")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="seed of the held-out videos")
    parser.add_argument("--viz", type=int, default=3, help="draw the first N tubes as mp4 + IoU plot")
    parser.add_argument("--train-steps", type=int, default=30, help="steps of the short training (0 skips it)")
    parser.add_argument("--train-checkpoint", action="store_true", help="train the demo checkpoint from scratch (make demo-train)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared CPU)")
    parser.add_argument("--results", default="bench/results/demo_checkpoint.json",
                        help="with --train-checkpoint: the JSON of the run (recipe, time, held-out metrics)")
    args = parser.parse_args(argv)
    _progress_logging()
    import torch

    torch.set_num_threads(args.threads)
    return run_recipe(args) if args.train_checkpoint else run_demo(args)
