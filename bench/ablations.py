"""Ablations the paper's way (issue 16, item 2): every variant fine-tunes from the committed base model.

Each (variant, seed) converts llava_st/checkpoints/llava-st-base with the variant's core.STConfig
(hosts.hf.convert_base; the base's weights kept, queries and decoder new), fine-tunes it with the same
data (recipes.synthetic_stg's "task+colour+enter" clips, seed `seed`), the same steps, schedule
(cosine, 30 warm-up steps, lr 1e-3, batch 8) and train_hf seed `seed`, then grounds `--num-videos`
held-out clips (llava_st.demo.evaluate_checkpoint, seed HELD_OUT_SEED). Variants: those of
bench.learning_check (full, paper_decoder, boxes_as_text, queries_after, no_dual_attn) plus the Table 9
analogue `frames4_queries4`: 4 sampled frames and 4 queries against full's 8/8. The synthetic clips have
8 frames, so 8/8 is the most that means anything (a query without a frame is never used, and 16 frames
would repeat frames); halving both is the one meaningful point of the sweep.

    python -m bench.ablations [--seeds 0,1,2] [--variants full,...] [--steps N] [--num-videos 100] [--rerun] [--quick]

Writes bench/results/ablations/<variant>-seed<k>.json per run (skipped when present: the table is built
across sittings; a run killed before it finishes writes nothing) and then bench/results/ablations.json:
per variant mean ± std (sample std, ddof 1; 0 with one seed) over the seeds present, and for each variant
against full whether |mean difference| > std(variant) + std(full) ("beyond spread"). A variant with fewer
than 3 seeds is marked incomplete. Each run also records where its boxes land (box_iou_by_frame: IoU by
sampled frame index; box_object_hits: on the target, on a distractor or on neither). --rerun runs a
(variant, seed) again into ablations/reruns/: kept beside the table's runs, not in their mean; the summary
compares each with its first run, and takes the object hits from reruns for a variant whose runs predate
them. --quick: a handful of steps and 8 videos, written under bench/out/.
Default steps: 2,000 (one fine-tune of full or queries_after measured 650-700 s of one core with a second run on
the other; boxes as text, with answers of up to 260 tokens, ~1,390 s: 2.1x, over a 20-min budget).
"""

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.learning_check import METRICS, parse_variants  # noqa: E402
from bench.learning_check import VARIANTS as LEARNING_VARIANTS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
QUICK = ROOT / "bench" / "out" / "ablations-quick"
CACHE = ROOT / ".cache" / "ablations"
VARIANTS = dict(LEARNING_VARIANTS, frames4_queries4={"num_queries": 4})
from llava_st.recipes.synthetic_stg import FROM_BASE_DATA as DATA  # noqa: E402

STEPS, QUICK_STEPS = 2000, 3
COMPLETE_SEEDS = 3
HITS = ("target", "distractor", "neither")  # box_object_hits' classes


def variant_st(name: str):
    """The variant's STConfig: the demo's method with what every fine-tune from the base adds
    (synthetic_stg.FROM_BASE_ST, the decoder's reference point; paper_decoder and no_dual_attn set it off:
    parameter-free decoder, no attention to refer to) and the variant's own changes."""
    from llava_st.recipes.synthetic_stg import FROM_BASE_ST, demo_st

    return demo_st(**dict(FROM_BASE_ST, **VARIANTS[name]))


def trained_answers(records, frames: int):
    """The boxes-as-text answer each record would be trained with (snapped span, one normalised box per
    sampled frame inside it), clips sampled as the grounder samples them (data.video.sample_frames, at
    most `frames` frames)."""
    from llava_st.core.boxtext import format_boxes_text
    from llava_st.core.timespan import snap_span
    from llava_st.data.video import sample_frames

    out = []
    for r in records:
        times = sample_frames(round(r["duration"] * r["fps"]) or 1, r["fps"], frames_upbound=frames).times
        start, end = snap_span(r["span"][0], r["span"][1], times)
        boxes = {round(b["t"], 3): b["xyxy"] for b in r["boxes"]}
        w, h = r["width"], r["height"]
        rows = [(t, [boxes[round(t, 3)][0] / w, boxes[round(t, 3)][1] / h, boxes[round(t, 3)][2] / w, boxes[round(t, 3)][3] / h])
                for t in times if start - 1e-6 <= t <= end + 1e-6 and round(t, 3) in boxes]
        out.append((times.tolist(), format_boxes_text(start, end, rows)))
    return out


def check_answer_budget(grounder, records, frames: int) -> int:
    """Assert that no trained boxes-as-text answer of `records` exceeds the grounder's answer budget;
    returns the longest answer's tokens. AssertionError naming the record otherwise."""
    tok = grounder.processor.tokenizer
    longest = 0
    for record, (times, text) in zip(records, trained_answers(records, frames)):
        n = len(tok(text).input_ids)
        budget = grounder.answer_budget(times)
        assert n <= budget, f"id={record['id']}: trained answer of {n} tokens exceeds the answer budget {budget}: {text!r}"
        longest = max(longest, n)
    return longest


def frames_in_both(records, tubes):
    """The predicted boxes inside both the ground-truth span and the predicted tube: per record, a list of
    (video frame index, t seconds, predicted pixel xyxy, true pixel xyxy). `records`: the clips (pixel xyxy
    boxes per second); `tubes`: demo.evaluate_checkpoint's tubes.json rows (id, frames[{t, box_xyxy}])."""
    by_id = {t["id"]: t for t in tubes}
    for r in records:
        truth = {round(b["t"] * r["fps"]): b["xyxy"] for b in r["boxes"]}
        frames = [(round(f["t"] * r["fps"]), f["t"], f["box_xyxy"]) for f in by_id.get(r["id"], {}).get("frames", [])]
        yield r, [(frame, t, box, truth[frame]) for frame, t, box in frames if frame in truth]


def box_iou_by_frame(records, tubes, frames: int) -> dict:
    """Box precision per sampled frame: for each sampled frame index k (0..frames-1, clips sampled as the
    grounder samples them: data.video.sample_frames, at most `frames` frames), the mean IoU of the predicted box against the
    ground-truth box of that frame, over the frames inside both the ground-truth span and the predicted
    tube (frames_in_both; box precision only: frames the span missed are not counted).
    Returns {"mean_iou": [frames floats, None where no frame], "frames": [counts]}. An interleaved query
    sees only its own and earlier frames (causal attention), so if that limited it, its IoU would rise
    with k; queries after the video see every frame."""
    import numpy as np
    import torch

    from llava_st.core.boxes import paired_box_iou
    from llava_st.data.video import sample_frames

    pred, gt, at = [], [], []
    for r, inside in frames_in_both(records, tubes):
        grid = sample_frames(round(r["duration"] * r["fps"]) or 1, r["fps"], frames_upbound=frames).times
        for _, t, box, true_box in inside:
            pred.append(box)
            gt.append(true_box)
            at.append(int(np.abs(grid - t).argmin()))
    iou = paired_box_iou(torch.tensor(pred, dtype=torch.float64), torch.tensor(gt, dtype=torch.float64)).numpy() if pred else np.zeros(0)
    at = np.asarray(at, dtype=int)
    counts = [int((at == k).sum()) for k in range(frames)]
    return {"mean_iou": [float(iou[at == k].mean()) if counts[k] else None for k in range(frames)], "frames": counts}


def box_object_hits(records, tubes, seed: int, config, split: str = "heldout", threshold: float = 0.1) -> dict:
    """Which object each predicted box is on: over the frames inside both the ground-truth span and the
    predicted tube, the fraction whose box overlaps the target most ("target"), a distractor most
    ("distractor"), or no object by IoU >= `threshold` ("neither") (frames_in_both). The object a box is on, not how well
    it fits it (that is m_vIoU): a decoder that localises objects but cannot tell which one the description
    names puts its boxes on distractors; one that cannot localise, on neither. The clips' scenes are
    regenerated from their ids (data.synthetic.make_stvg with `seed`, `config`, `split`: the clips
    demo.evaluate_checkpoint grounded), so the distractors' pixel boxes are known.
    Returns {"target", "distractor", "neither": fractions (None without frames), "frames": count}."""
    import torch

    from llava_st.core.boxes import box_iou
    from llava_st.data.synthetic import box_at, make_stvg

    hits = {"target": 0, "distractor": 0, "neither": 0}
    for r, inside in frames_in_both(records, tubes):
        if not inside:
            continue
        _, _, scene = make_stvg(int(r["id"].rsplit("-", 1)[1]), seed, config, split)
        for frame, _, box, _ in inside:
            objects = [box_at(obj, frame, config) for obj in scene if obj.first <= frame <= obj.last]  # the target first
            iou = box_iou(torch.tensor([box], dtype=torch.float64), torch.tensor(objects, dtype=torch.float64))[0]
            best = int(iou.argmax())
            hits["neither" if iou[best] < threshold else "target" if best == 0 else "distractor"] += 1
    total = sum(hits.values())
    return dict({k: v / total if total else None for k, v in hits.items()}, frames=total)


def variant_recipe(seed: int, steps: int, frames: int):
    """The fine-tune every variant gets (recipes.synthetic_stg.Recipe from the base): one cosine stage of
    `steps` on DATA, data and order of `seed`, decoder initialised from `seed`."""
    from llava_st.recipes.synthetic_stg import from_base_recipe

    return from_base_recipe(seed, steps, frames, train_videos=3000 if steps > QUICK_STEPS else 16)


def fine_tune(name: str, seed: int, steps: int, num_videos: int, work: Path) -> dict:
    """Fine-tune the base with the variant's STConfig (recipes.synthetic_stg.train_recipe), evaluate;
    returns the per-run result."""
    from llava_st.api import load_grounder
    from llava_st.data.synthetic import write_split
    from llava_st.demo import HELD_OUT_SEED, evaluate_checkpoint
    from llava_st.recipes.synthetic_stg import VIDEOS, train_recipe

    st = variant_st(name)
    frames = st.num_queries
    ckpt = work / f"{name}-seed{seed}" / "checkpoint"
    info = train_recipe(ckpt, variant_recipe(seed, steps, frames), st, data_dir=CACHE / ("data" if steps > QUICK_STEPS else "data-quick"))
    longest = None
    if st.query_mode == "none":
        heldout = write_split(work / "heldout-check", num_videos, HELD_OUT_SEED, VIDEOS, "heldout", progress=False)
        longest = check_answer_budget(load_grounder(str(ckpt), frames=frames), heldout, frames)
    ev = evaluate_checkpoint(ckpt, work / f"{name}-seed{seed}" / "eval", num_videos=num_videos, progress=False, frames=frames)
    logged = [row for row in info["log_history"] if "loss" in row]
    run = work / f"{name}-seed{seed}" / "eval"
    records, tubes = json.loads((run / "data" / "heldout.json").read_text()), json.loads((run / "tubes.json").read_text())
    return {"variant": name, "seed": seed, "steps": steps, "data": DATA, "num_videos": num_videos, "train_seconds": info["seconds"],
            "st": st.to_dict(), "frames": frames, "base": info["base"], "metrics": ev["splits"]["test"]["all"],
            "unparsable": ev["counts"]["unparsable"], "box_iou_by_frame": box_iou_by_frame(records, tubes, frames),
            "box_object_hits": box_object_hits(records, tubes, HELD_OUT_SEED, VIDEOS),
            "longest_text_answer_tokens": longest, "last_losses": logged[-3:],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _stats(values):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std}


def _mean_present(values):
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _mean_hits(rows):
    """box_object_hits averaged over the runs that have it, with their seeds (and whether they are reruns);
    None when none has it."""
    if not rows:
        return None
    return dict({k: _mean_present([r["box_object_hits"][k] for r in rows]) for k in HITS}, seeds=sorted(r["seed"] for r in rows),
                reruns=any(r.get("rerun") for r in rows))


def summarise(run_dir) -> dict:
    """Per variant mean ± std over the seeds present, and each variant vs full: beyond_spread when
    |mean - mean_full| > std + std_full."""
    runs = {}
    for path in sorted(Path(run_dir).glob("*-seed*.json")):
        row = json.loads(path.read_text())
        runs.setdefault(row["variant"], []).append(row)
    reruns = {}
    for path in sorted((Path(run_dir) / "reruns").glob("*-seed*.json")):
        row = json.loads(path.read_text())
        reruns.setdefault(row["variant"], []).append(row)
    variants = {}
    for name, rows in runs.items():
        stats = {k: _stats([r["metrics"][k] for r in rows]) for k in METRICS}
        stats["train_seconds"] = _stats([r["train_seconds"] for r in rows])
        by_frame = [r["box_iou_by_frame"]["mean_iou"] for r in rows if "box_iou_by_frame" in r]
        hits = [r for r in rows if r.get("box_object_hits")] or [r for r in reruns.get(name, []) if r.get("box_object_hits")]
        variants[name] = {"seeds": sorted(r["seed"] for r in rows), "num_seeds": len(rows), "complete": len(rows) >= COMPLETE_SEEDS,
                          "steps": sorted({r["steps"] for r in rows}),
                          "num_videos": sorted({r["num_videos"] for r in rows}), "stats": stats,
                          "box_iou_by_frame": [_mean_present(k) for k in zip(*by_frame)] if by_frame else None,
                          "box_object_hits": _mean_hits(hits)}
    full = variants.get("full")
    for name, v in variants.items():
        if full is None or name == "full":
            continue
        v["vs_full"] = {k: {"difference": v["stats"][k]["mean"] - full["stats"][k]["mean"],
                            "spread": v["stats"][k]["std"] + full["stats"][k]["std"],
                            "beyond_spread": abs(v["stats"][k]["mean"] - full["stats"][k]["mean"])
                            > v["stats"][k]["std"] + full["stats"][k]["std"]}
                        for k in METRICS}
    first = {(r["variant"], r["seed"]): r for rows in runs.values() for r in rows}
    again = [{"variant": r["variant"], "seed": r["seed"], "date": r.get("date"), "metrics": r["metrics"],
              "train_seconds": r["train_seconds"], "first_run": first.get((r["variant"], r["seed"]), {}).get("metrics")}
             for n in VARIANTS for r in reruns.get(n, [])]
    return {"name": "ablations", "spread_rule": "|mean - mean_full| > std + std_full (sample std over seeds; 0 with one seed)",
            "complete_seeds": COMPLETE_SEEDS, "variants": {n: variants[n] for n in VARIANTS if n in variants}, "reruns": again}


def table(summary: dict):
    """Markdown rows of the summary (%, mean ± std), with seeds and the spread test vs full (m_vIoU)."""
    rows = ["| variant | seeds | " + " | ".join(METRICS) + " | train s | m_vIoU vs full beyond spread |", "|---" * (len(METRICS) + 4) + "|"]
    for name, v in summary["variants"].items():
        s = v["stats"]
        seeds = f"{v['num_seeds']}" + ("" if v["complete"] else " (incomplete)")
        vs = v.get("vs_full", {}).get("m_vIoU")
        cmp = "–" if vs is None else f"{100 * vs['difference']:+.1f} ({'yes' if vs['beyond_spread'] else 'no'})"
        rows.append(f"| {name} | {seeds} | " + " | ".join(f"{100 * s[k]['mean']:.1f} ± {100 * s[k]['std']:.1f}" for k in METRICS)
                    + f" | {s['train_seconds']['mean']:.0f} | {cmp} |")
    return rows


def frame_table(summary: dict):
    """Markdown rows: each variant's box IoU (%) at each sampled frame index, averaged over its seeds
    (box_iou_by_frame; "–" where no frame was inside both spans)."""
    rows = [(n, v["box_iou_by_frame"]) for n, v in summary["variants"].items() if v.get("box_iou_by_frame")]
    if not rows:
        return []
    width = max(len(r) for _, r in rows)
    out = ["| variant | " + " | ".join(f"frame {k}" for k in range(width)) + " |", "|---" * (width + 1) + "|"]
    for name, values in rows:
        cells = [("–" if v is None else f"{100 * v:.1f}") for v in values] + [""] * (width - len(values))
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def hits_table(summary: dict):
    """Markdown rows: where each variant's boxes land (box_object_hits, %, mean over the seeds that have it)."""
    rows = [(n, v["box_object_hits"]) for n, v in summary["variants"].items() if v.get("box_object_hits")]
    if not rows:
        return []
    out = ["| variant | seeds | on the target | on a distractor | on neither |", "|---|---|---|---|---|"]
    for name, h in rows:
        seeds = ",".join(map(str, h["seeds"])) + (" (rerun)" if h.get("reruns") else "")
        out.append(f"| {name} | {seeds} | " + " | ".join(f"{100 * h[k]:.1f}" for k in HITS) + " |")
    return out


def rerun_table(summary: dict):
    """Markdown rows: each rerun's metrics (%) against the table's first run of the same variant and seed."""
    rows = [r for r in summary.get("reruns", []) if r["first_run"]]
    if not rows:
        return []
    out = ["| variant | seed | m_tIoU first / rerun | m_vIoU first / rerun | vIoU@0.5 first / rerun | rerun date |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{100 * r['first_run'][k]:.1f} / {100 * r['metrics'][k]:.1f}" for k in ("m_tIoU", "m_vIoU", "vIoU@0.5")]
        out.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(cells) + f" | {r['date']} |")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--num-videos", type=int, default=None)
    p.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps, 8 videos, under bench/out/")
    p.add_argument("--out", default=None, help="folder of the per-run JSONs and the summary (default bench/results)")
    p.add_argument("--rerun", action="store_true",
                   help="run (variant, seed) again into ablations/reruns/ (kept beside the table's runs, not in their mean)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    names = parse_variants(p, args.variants, VARIANTS)
    out = Path(args.out or (QUICK if args.quick else RESULTS))
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    num_videos = args.num_videos or (8 if args.quick else 100)
    run_dir = out / "ablations"
    write_dir = run_dir / "reruns" if args.rerun else run_dir
    write_dir.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        for name in names:
            path = write_dir / f"{name}-seed{seed}.json"
            if path.exists():
                logging.info("skip %s (exists)", path)
                continue
            work = (CACHE / ("quick" if args.quick else "runs") if args.out is None else out / "work") / ("reruns" if args.rerun else "")
            row = dict(fine_tune(name, seed, steps, num_videos, work), rerun=args.rerun)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(row, indent=1) + "\n")
            tmp.replace(path)
    summary = summarise(run_dir)
    (out / "ablations.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(table(summary)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
