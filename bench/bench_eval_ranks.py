"""Eval drivers on torchrun: 2 ranks vs 1, `llava-st eval stvg` with a real tiny checkpoint.

`torchrun --standalone --nproc_per_node {1,2} -m bench.bench_eval_ranks --entry TIMES eval stvg ...` runs
the eval CLI (llava_st.cli -> eval.cli -> drivers.evaluate: load_grounder, each rank predicts its shard
of the records, rank 0 waits at the barrier, merges, scores and writes metrics.json) with `evaluate`
wrapped to write the seconds of its call per rank. The grounder is a random tiny transformers-host ST
checkpoint (recipes.tiny_model.build_tiny_st: SigLIP 32 px, Qwen2 hidden 64 x 2 layers, 8 queries) over
the 4k Qwen tokenizer; the data are generated mp4s (data.synthetic.write_split: 64x48, 16 frames at
4 fps, one video per record, 8 frames sampled) in an HC-STVG-v1 file. Each query decodes its video,
runs the tower, prefills and generates the default answer budget (random weights: the whole budget).
Each rank has one torch thread (OMP_NUM_THREADS=1).

Throughput is records per second of the evaluate span: from the first rank's `evaluate` start to the
last rank's end (rank 0's, after merging and scoring), without process start and checkpoint load; rank
0's own call time and the end-to-end wall time of the torchrun command are reported beside it. The
merged metrics of every 2-rank run must equal the 1-rank run's. The 1- and 2-rank runs alternate
repeat by repeat; every run starts from an empty output directory.
core_share is each rank's CPU seconds over its call's wall seconds: near 1 a rank had a core to itself
the whole time; well below 1 it waited (for a core taken by other processes on this shared machine, or
at the final barrier). ratio_of_fastest compares the fastest run of each variant (the least disturbed).
cpu_s_per_record is all ranks' CPU seconds per record: when it grows with 2 ranks, the two cores
slow each other down (shared cache and memory bandwidth, or vCPUs that share a physical core).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import common

FRAMES = 8


def entry(argv) -> int:
    """`--entry TIMES <llava-st arguments>`: the llava-st CLI with drivers.evaluate timed (run by torchrun)."""
    from llava_st import cli
    from llava_st.eval import cli as eval_cli

    times, rest = Path(argv[0]), argv[1:]
    evaluate = eval_cli.evaluate

    def timed(*args, **kwargs):
        began, start, cpu, main = time.time(), time.perf_counter(), time.process_time(), time.thread_time()
        result = evaluate(*args, **kwargs)
        seconds, cpu, main = time.perf_counter() - start, time.process_time() - cpu, time.thread_time() - main
        path = times / f"rank{os.environ.get('RANK', '0')}.json"
        path.write_text(json.dumps({"seconds": seconds, "cpu_s": cpu, "main_cpu_s": main, "start": began, "end": began + seconds}))
        return result

    eval_cli.evaluate = timed
    return cli.main(rest)


def one_run(nproc: int, data: Path, root: Path, checkpoint: Path, out: Path, times: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(times, ignore_errors=True)
    times.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(common.ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "bench.bench_eval_ranks",
           "--entry", str(times), "eval", "stvg", "--benchmark", "hcstvg-v1", "--checkpoint", str(checkpoint), "--data", str(data),
           "--data-root", str(root), "--out", str(out), "--frames", str(FRAMES), "--device", "cpu"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=common.ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"torchrun --nproc_per_node {nproc} failed:\n{proc.stderr[-3000:]}")
    ranks = [json.loads((times / f"rank{r}.json").read_text()) for r in range(nproc)]
    span = max(r["end"] for r in ranks) - min(r["start"] for r in ranks)
    return {"evaluate_s": span, "rank0_s": ranks[0]["seconds"], "rank_s": [r["seconds"] for r in ranks],
            "start_lag_s": max(r["start"] for r in ranks) - min(r["start"] for r in ranks), "wall_s": wall,
            "core_share": [r["cpu_s"] / max(r["seconds"], 1e-9) for r in ranks],
            "main_share": [r["main_cpu_s"] / max(r["seconds"], 1e-9) for r in ranks],
            "metrics": json.loads((out / "metrics.json").read_text())}


def run(args) -> int:
    from llava_st.data.synthetic import SyntheticConfig, write_split
    from llava_st.recipes.tiny_model import build_tiny_st

    records = 16 if args.quick else args.records
    config = SyntheticConfig(width=64, height=48, fps=4.0, num_frames=16, frames=FRAMES)
    checkpoint = common.CACHE / "tiny-st-eval-ranks"
    build_tiny_st(common.tokenizer(), out_dir=str(checkpoint))
    root = common.CACHE / "data" / f"eval-ranks-{records}"
    write_split(root, num=records, seed=7, config=config, split="test", task="stvg", progress=False)
    record = common.Record("eval_ranks", args, "transformers (tiny ST checkpoint)", {
        "records": records, "video": "64x48, 16 frames at 4 fps (data.synthetic), one per record", "frames": FRAMES,
        "checkpoint": "recipes.tiny_model.build_tiny_st (random; SigLIP 32 px, Qwen2 hidden 64 x 2 layers, 8 queries)",
        "benchmark": "hcstvg-v1", "answer_budget": "the grounder's default (core.boxtext.answer_token_budget)",
        "launcher": "torchrun --standalone --nproc_per_node 1|2 -m bench.bench_eval_ranks --entry (llava-st eval stvg), "
                    "OMP_NUM_THREADS=1 per rank"})
    ceiling = common.parallel_ceiling(1 if args.quick else 3)  # what 2 processes get on this machine right now
    runs = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for _ in range(args.repeats):
            for nproc in (2, 1):
                runs[nproc].append(one_run(nproc, root / "test.json", root, checkpoint, tmp / f"out{nproc}", tmp / f"times{nproc}"))
                r = runs[nproc][-1]
                common.logger.info("%d rank(s): evaluate span %.2f s (rank calls %s), wall %.2f s", nproc, r["evaluate_s"],
                                   [round(x, 2) for x in r["rank_s"]], r["wall_s"])
    identical = all(r["metrics"] == runs[1][0]["metrics"] for n in runs for r in runs[n])
    counts = runs[1][0]["metrics"]["counts"]
    results = common.rank_scaling(runs, records, "evaluate_s")
    ratio, ratio_of_fastest, wall_ratio = results["ratio"], results["ratio_of_fastest"], results["ratio_end_to_end"]
    ratios = results["stability"]["ratios"]
    record.data["results"] = {**results, "merged_metrics_identical_to_1_rank": identical, "machine_parallel_ceiling": ceiling,
                              "counts": counts}
    record.data["targets"] = [common.target(f"eval records/s, 2 ranks / 1 (tiny ST checkpoint, {records} STVG records)",
                                            ratio, 1.8, ">=", "x")]
    record.data["notes"].append(
        f"eval_ranks: 2 ranks / 1 = {ratio:.2f}x on the evaluate span over {records} records "
        f"(per-repeat {', '.join(f'{r:.2f}' for r in ratios)}), {wall_ratio:.2f}x end to end with process start and checkpoint "
        f"load; {common.contention(runs, records, ratio_of_fastest)}; merged metrics {'identical' if identical else 'NOT identical'} "
        f"to 1 rank; {common.ceiling_note(ratio, ceiling)}; 1-min load "
        f"{record.data['load_before'][0]:.1f} before the run on 2 cores shared with other developers.")
    record.write()
    return 0 if identical else 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--entry"]:
        return entry(argv[1:])
    p = common.parser(__doc__.splitlines()[0], repeats=3)
    p.add_argument("--records", type=int, default=320, help="STVG records, one video each (16 with --quick)")
    args, code = common.start(p, argv)
    if args is None:
        return code
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
