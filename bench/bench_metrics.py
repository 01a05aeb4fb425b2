"""STVG metrics speed: llava_st.eval.metrics (score_stvg + summarize_stvg) over 10,000 tubes.

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
        frames = [{"t": float(t), "box_xyxy": [x0 + t * 5 + 10, y0 + 5, x0 + t * 5 + 105, y0 + 118]} for t in times if p_start <= t <= p_end]
        pairs.append((record, {"span": [float(p_start), float(max(p_end, p_start))], "frames": frames}))
    return pairs


def profile(pairs, convention, queries: int, top: int = 8) -> list:
    """cProfile of `queries` score_stvg calls: the `top` functions by own time [{function, calls, tottime_s}]."""
    from llava_st.eval.metrics import score_stvg

    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(queries):
        score_stvg(*pairs[i % len(pairs)], convention)
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return [{"function": f"{path.split('/llava_st/')[-1]}:{line}({name})", "calls": calls, "tottime_s": round(tottime, 4)}
            for (path, line, name), (_, calls, tottime, _, _) in rows]


def run(args) -> int:
    from llava_st.eval.metrics import CONVENTIONS, score_stvg_many, summarize_stvg

    queries = 500 if args.quick else QUERIES
    pairs = make_pairs(min(DISTINCT, queries))
    record = common.Record("metrics", args, "none (pure metric code)", {"queries": queries, "distinct_pairs": len(pairs), "frames_per_video": 500, "predicted_frames": 64})
    results = {}
    for name, convention in CONVENTIONS.items():

        def score_all():
            return summarize_stvg(score_stvg_many([pairs[i % len(pairs)] for i in range(queries)], convention))

        times = common.time_it(score_all, args.repeats, warmup=0)
        results[name] = {"times_s": [round(t, 4) for t in times], "median_s": round(common.median(times), 4), "summary": score_all()}
        common.logger.info("%s: %d queries in %.3f s", name, queries, results[name]["median_s"])
    record.data["results"] = results
    worst = max(r["median_s"] for r in results.values())
    label = f"STVG metrics over {queries:,} tubes (slowest convention)"
    record.data["targets"] = [common.target(label, worst, 1.0, "<", " s")]
    if worst >= 1.0:
        slowest = max(results, key=lambda n: results[n]["median_s"])
        record.data["results"]["profile"] = profile(pairs, CONVENTIONS[slowest], min(queries, 1000))
        top = ", ".join(f"{row['function']} {row['tottime_s']:.2f} s" for row in record.data["results"]["profile"][:3])
        record.data["notes"].append(
            f"Target missed: ~{1000 * worst / queries:.2f} ms per query after the box IoUs of all queries were batched into one pass and "
            f"the nearest-time matrix replaced by np.searchsorted (was ~0.73 ms); own time over 1,000 {slowest} queries (cProfile, "
            f"'profile'): {top}. What remains is per query: turning its ~250 ground-truth box dicts into arrays and a few dozen small "
            "numpy calls; < 1 s for 10,000 queries needs the ground truth held as arrays (converted once per test set), not dicts."
        )
    record.write()
    return 0


def main(argv=None) -> int:
    args, code = common.start(common.parser(__doc__.splitlines()[0], repeats=2), argv)
    if args is None:
        return code
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
