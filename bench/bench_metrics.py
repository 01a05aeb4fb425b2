"""STVG metrics speed: llava_st.eval.metrics (prepare_stvg_gt + score_stvg_many + summarize_stvg) over 10,000 tubes.

Queries are HC-STVG-like (20 s at 25 fps = 500 frames, a ground-truth box on every frame of a 5-15 s
span; predictions of 64 sampled frames with a box on each frame inside a predicted span), 200 distinct
record/tube pairs scored in turn until 10,000 queries are scored. Every convention preset is timed.
"""

import cProfile
import pstats
import sys

import numpy as np

from . import common

QUERIES = 10_000
DISTINCT = 200


def make_pairs(count: int, seed: int = 0):
    """`count` (Uni-STG STVG record, tube) pairs with random spans and boxes (pixels, seconds)."""
    rng = np.random.default_rng(seed)
    fps, total, width, height = 25.0, 500, 640, 360
    pairs = []
    for n in range(count):
        start = int(rng.integers(0, total // 2))
        end = min(total - 1, start + int(rng.integers(125, 375)))
        x0, y0 = rng.uniform(0, width / 2), rng.uniform(0, height / 2)
        gt = [{"t": f / fps, "xyxy": [x0 + f * 0.2, y0, x0 + f * 0.2 + 100, y0 + 120]} for f in range(start, end + 1)]
        record = {"id": f"q{n}", "span": [start / fps, end / fps], "boxes": gt, "fps": fps, "duration": total / fps}
        times = np.linspace(0, (total - 1) / fps, 64)
        p_start, p_end = (start + rng.integers(-50, 50)) / fps, (end + rng.integers(-50, 50)) / fps
        frames = [{"t": float(t), "box_xyxy": [x0 + t * 5 + 10, y0 + 5, x0 + t * 5 + 105, y0 + 118]}
                  for t in times if p_start <= t <= p_end]
        pairs.append((record, {"span": [float(p_start), float(max(p_end, p_start))], "frames": frames}))
    return pairs


def profile(records, tubes, convention, top: int = 8) -> list:
    """cProfile of preparing and scoring (records, tubes): the `top` functions by own time
    [{function, calls, tottime_s}]."""
    from llava_st.eval.metrics import prepare_stvg_gt, score_stvg_many

    profiler = cProfile.Profile()
    profiler.enable()
    score_stvg_many(zip(prepare_stvg_gt(records), tubes), convention)
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return [{"function": f"{path.split('/llava_st/')[-1]}:{line}({name})", "calls": calls, "tottime_s": round(tottime, 4)}
            for (path, line, name), (_, calls, tottime, _, _) in rows]


def run(args) -> int:
    from llava_st.eval.metrics import CONVENTIONS, prepare_stvg_gt, score_stvg_many, summarize_stvg

    queries = 500 if args.quick else QUERIES
    pairs = make_pairs(min(DISTINCT, queries))
    records = [pairs[i % len(pairs)][0] for i in range(queries)]
    tubes = [pairs[i % len(pairs)][1] for i in range(queries)]
    boxes = sum(len(r["boxes"]) for r in records)
    record = common.Record("metrics", args, "none (pure metric code)", {"queries": queries, "distinct_pairs": len(pairs),
                                                                        "frames_per_video": 500, "predicted_frames": 64,
                                                                        "ground_truth_boxes": boxes})

    def prepare():
        return prepare_stvg_gt(records)

    prepare_times = common.time_it(prepare, args.repeats)
    results = {"prepare": {"times_s": [round(t, 4) for t in prepare_times], "median_s": round(common.median(prepare_times), 4)}}
    common.logger.info("prepare_stvg_gt: %d records (%d boxes) in %.3f s", queries, boxes, results["prepare"]["median_s"])
    for name, convention in CONVENTIONS.items():

        def score(gt, convention=convention):
            return summarize_stvg(score_stvg_many(zip(gt, tubes), convention))

        ground_truth = prepare()
        times = common.time_interleaved(
            {"eval": lambda: score(prepare()), "score": lambda ground_truth=ground_truth: score(ground_truth)}, args.repeats)
        results[name] = {
            "times_s": [round(t, 4) for t in times["eval"]],
            "median_s": round(common.median(times["eval"]), 4),
            "score_times_s": [round(t, 4) for t in times["score"]],
            "score_median_s": round(common.median(times["score"]), 4),
            "summary": score(ground_truth),
        }
        common.logger.info("%s: %d queries in %.3f s (%.3f s with the ground truth prepared)", name, queries,
                           results[name]["median_s"], results[name]["score_median_s"])
    record.data["results"] = results
    conventions = [n for n in results if n != "prepare"]
    worst = max(results[n]["median_s"] for n in conventions)
    worst_score = max(results[n]["score_median_s"] for n in conventions)
    record.data["targets"] = [
        common.target(f"STVG metrics over {queries:,} tubes, ground truth prepared once per test set (slowest convention)",
                      worst_score, 1.0, "<", " s"),
        common.target(f"STVG metrics over {queries:,} tubes incl. preparing their ground truth (slowest convention)",
                      worst, 1.0, "<", " s"),
    ]
    record.data["notes"].append(
        f"Timed per convention, interleaved: 'score_median_s' (first target) is score_stvg_many + summarize_stvg on ground truth "
        f"prepared beforehand, as the eval driver does (prepare_stvg_gt once per test set, reused for every group it scores); "
        f"'median_s' (second target) adds that preparation, turning the {queries:,} records' {boxes:,} box dicts into arrays "
        f"('prepare': {results['prepare']['median_s']:.2f} s alone; the records repeat {len(pairs)} distinct ones but each is "
        "converted as if distinct). Before: 2.3-3.1 s, every call converting the box dicts and placing both tubes on the whole "
        "grid of each video query by query; now only grid frames inside each ground-truth span are used and the box IoUs of "
        "1,024 queries at a time are computed in one pass; the scores are the same to the last bit (tests/test_eval_metrics.py)."
    )
    if worst >= 1.0 or worst_score >= 1.0:
        slowest = max(conventions, key=lambda n: results[n]["median_s"])
        record.data["results"]["profile"] = profile(records[:1000], tubes[:1000], CONVENTIONS[slowest])
        top = ", ".join(f"{row['function']} {row['tottime_s']:.2f} s" for row in record.data["results"]["profile"][:3])
        record.data["notes"].append(
            f"A target missed; own time over preparing and scoring 1,000 {slowest} queries (cProfile, 'profile'): {top}. "
            "Converting the box dicts (numpy.fromiter, the fastest of the ways tried) is most of the preparation."
        )
    record.write()
    return 0


def main(argv=None) -> int:
    args, code = common.start(common.parser(__doc__.splitlines()[0], repeats=3), argv)
    if args is None:
        return code
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
