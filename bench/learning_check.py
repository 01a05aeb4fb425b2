"""Learning check: does the method learn on the synthetic STG benchmark, and how do the paper's ablations
(Table 7) compare with the same budget?

Every variant trains the from-scratch recipe (llava_st.recipes.synthetic_stg.Recipe(): base None, SCRATCH_STAGES,
the demo checkpoint's until it was fine-tuned from the base: a tiny LLaVA-OneVision from random weights, a box
stage then the full task, transformers host, hosts.hf.train_hf; bench.ablations fine-tunes the pretrained base
instead, the paper's way) with identical steps, data and seed, changing only core.STConfig, then grounds the
same held-out synthetic videos (eval.drivers, HC-STVG official convention at 1 fps). Variants:
    full             the demo's method: interleaved queries, dual cross attention with learned
                     projections and residuals (documented options; bench.ablations adds the reference point)
    paper_decoder    interleaved queries, the paper's parameter-free decoder (no projections, residual
                     or reference point)
    boxes_as_text    no queries, no decoder: boxes answered as text (Table 7 row 1)
    queries_after    all queries after the video (Table 7 row 2)
    no_dual_attn     queries straight to the space head (Table 7 row 3)

    python -m bench.learning_check [--scale 0.5] [--variants full,queries_after,...]

Writes bench/results/learning_check.json and prints a markdown table (README "Demo" section). Budget:
the full recipe is 21,750 steps, ~100 min per variant on one core of this machine (boxes as text is slower:
its answers are ~100 tokens); --scale shrinks every stage's steps by the same factor, and --out lets
variants run in separate processes (one per core) and be merged afterwards.
"""

import argparse
import json
import logging
import os
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CACHE = ROOT / ".cache" / "learning-check"

VARIANTS = {
    "full": {},
    "paper_decoder": {"decoder_projections": False, "decoder_residual": False, "decoder_reference": False},
    "boxes_as_text": {"query_mode": "none"},
    "queries_after": {"query_mode": "after"},
    "no_dual_attn": {"dual_cross_attention": False, "decoder_reference": False},
}
METRICS = ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5")


def run_variant(name: str, recipe, num_videos: int) -> dict:
    """Train and evaluate one variant; returns {"variant", "st", "seconds", "metrics", "last_losses"}."""
    from llava_st.demo import evaluate_checkpoint
    from llava_st.recipes.synthetic_stg import demo_st, train_recipe

    st = demo_st(**VARIANTS[name])
    ckpt = CACHE / name / "checkpoint"
    info = train_recipe(str(ckpt), recipe, st, data_dir=CACHE / "data")
    result = evaluate_checkpoint(ckpt, CACHE / name / "eval", num_videos=num_videos, progress=False)
    logged = [row for row in info["log_history"] if "loss_text" in row]
    return {
        "variant": name,
        "st": info["st"],
        "seconds": info["seconds"],
        "metrics": result["splits"]["test"]["all"],
        "unparsable": result["counts"]["unparsable"],
        "last_losses": logged[-1] if logged else None,
    }


def parse_variants(parser, text: str, known) -> list:
    """The variant names of a comma-separated `text`; parser.error (exit 2) naming any not in `known`."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in known]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list(known)}")
    return names


def table(rows) -> str:
    lines = ["| variant | " + " | ".join(METRICS) + " | train s |", "|---" * (len(METRICS) + 2) + "|"]
    for row in rows:
        m = row["metrics"]
        lines.append(f"| {row['variant']} | " + " | ".join(f"{100 * m[k]:.1f}" for k in METRICS) + f" | {row['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from llava_st.recipes.synthetic_stg import SCRATCH_STAGES, Recipe

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="multiply every stage's steps (the budget)")
    p.add_argument("--first-stages", type=int, default=None, help="train only the recipe's first N stages")
    p.add_argument("--train-videos", type=int, default=Recipe.train_videos)
    p.add_argument("--num-videos", type=int, default=40, help="held-out videos per variant")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    p.add_argument("--out", default=str(RESULTS / "learning_check.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    names = parse_variants(p, args.variants, VARIANTS)
    base = Recipe(base=None, stages=SCRATCH_STAGES)  # from random weights, the from-scratch curriculum (spelt out)
    stages = tuple(replace(s, steps=max(1, round(s.steps * args.scale)), warmup=round(s.warmup * args.scale))
                   for s in base.stages[: args.first_stages])
    recipe = replace(base, stages=stages, train_videos=args.train_videos)
    load_before = os.getloadavg()[0]
    rows = [run_variant(name, recipe, args.num_videos) for name in names]
    out = {
        "name": "learning_check",
        "host": "transformers (hosts.hf)",
        "device": f"cpu ({platform.processor() or platform.machine()}), {os.cpu_count()} cores, shared",
        "recipe": asdict(recipe),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "results": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
