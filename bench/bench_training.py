"""Training overhead: step time and peak memory of the LLaVA-NeXT host with ST on vs off, equal batch;
plus the analytic FLOPs of queries + decoder at LLaVA-Video-7B scale.

A step is forward + backward + AdamW step of the mid-size model on a batch built by the host's own data
path (GroundingDataset + GroundingCollator on a real STVG mp4, 16 frames, LLaVA-Video data arguments).
ST off is the same host with `st_query_mode="none"` (upstream's model and loss on the same batch).
Step times come from both variants in one process, steps alternating (off, on, off, ...); peak
memory from each variant alone in its own process (ru_maxrss, or CUDA's peak allocation). The vision tower
is frozen and cached (the same for both variants). FlopCounterMode counts the decoder's FLOPs at the
mid-size configuration to check the analytic formula used at 7B.
"""

import json
import resource
import subprocess
import sys

import torch

from . import common, flops

FRAMES, BATCH = 16, 1  # LLaVA-Video trains videos with per_device_train_batch_size 1
QUICK_FRAMES = 4


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def setup(name: str, args):
    """(model in train mode, batch, step function) of one variant; a step is forward + backward + AdamW."""
    from llava_st.hosts.llava_next.data import GroundingCollator, GroundingDataset

    frames = QUICK_FRAMES if args.quick else FRAMES
    torch.manual_seed(0)
    tok, model = common.mid_llava_st(num_queries=frames, query_mode="interleave" if name == "st_on" else "none", device=args.device)
    common.VisionCache(model)
    model.get_vision_tower().requires_grad_(False)
    root, path = common.stvg_sample()
    data = GroundingDataset(str(path), tok, common.upstream_data_args(root, frames))
    batch = GroundingCollator(tokenizer=tok)([data[0] for _ in range(BATCH)])
    batch = {k: (v.to(args.device) if torch.is_tensor(v) else v) for k, v in batch.items()}
    batch["images"] = [im.to(args.device) for im in batch["images"]]
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step():
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return model, batch, step


def variant(name: str, args) -> dict:
    """One variant alone in this process: its peak memory over a warmup step and `repeats` steps (and,
    for ST on, the decoder's counted FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    frames = QUICK_FRAMES if args.quick else FRAMES
    model, batch, step = setup(name, args)
    before = rss_mb()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = common.time_it(step, args.repeats, args.device, warmup=1)
    out = {
        "step_s": [round(t, 4) for t in times],
        "median_step_s": round(common.median(times), 4),
        "rss_before_steps_mb": round(before, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "sequence_tokens": int(batch["input_ids"].shape[1]) + frames * common.TOKENS_PER_FRAME - 1 + (frames if name == "st_on" else 0),
        "batch": BATCH,
        "frames": frames,
    }
    if args.device.startswith("cuda"):
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if name == "st_on":
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(**batch)
        counts = counter.get_flop_counts()
        decoder = sum(sum(v.values()) for k, v in counts.items() if k.endswith("space_decoder"))
        texts = int(batch["grounding_text_mask"][0].sum())
        out["decoder_flops_counted"] = int(decoder)
        out["decoder_flops_analytic"] = int(
            BATCH * flops.decoder_flops(frames, common.TOKENS_PER_FRAME, texts, common.MID_LLM["hidden_size"]))
    return out


def run(args) -> int:
    frames = QUICK_FRAMES if args.quick else FRAMES
    record = common.Record("training", args, "llava_next", {"llm": common.MID_LLM, "frames": frames, "batch": BATCH,
                                                             "tokens_per_frame": common.TOKENS_PER_FRAME, "optimizer": "AdamW",
                                                             "vision": "frozen, cached"})
    results = {}
    for name in ("st_off", "st_on"):
        cmd = [sys.executable, "-m", "bench.bench_training", "--variant", name, "--device", args.device, "--repeats", "1",
               "--threads", str(args.threads)]
        if args.quick:
            cmd.append("--quick")
        done = subprocess.run(cmd, cwd=common.ROOT, capture_output=True, text=True, timeout=1200)
        if done.returncode:
            common.logger.error("%s failed:\n%s", name, done.stderr[-3000:])
            return 1
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        common.logger.info("%s: peak RSS %.0f MB", name, results[name]["peak_rss_mb"])
    steps = {}
    for name in ("st_off", "st_on"):
        _, _, steps[name] = setup(name, args)
    times = common.time_interleaved(steps, args.repeats, args.device, warmup=1)
    step_s = {k: common.median(v) for k, v in times.items()}
    on, off = results["st_on"], results["st_off"]
    time_ratio = step_s["st_on"] / step_s["st_off"]
    memory = "peak_cuda_mb" if "peak_cuda_mb" in on else "peak_rss_mb"
    memory_ratio = on[memory] / off[memory]
    activation_ratio = (on["peak_rss_mb"] - on["rss_before_steps_mb"]) / max(off["peak_rss_mb"] - off["rss_before_steps_mb"], 1e-6)
    seven_b = flops.st_overhead(64, common.TOKENS_PER_FRAME, 600, 12, common.QWEN2_7B)
    record.data["results"] = {
        "step_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "median_step_s": {k: round(v, 4) for k, v in step_s.items()},
        "memory_runs": results,
        "step_time_ratio": round(time_ratio, 4),
        "peak_memory_ratio": round(memory_ratio, 4),
        "peak_memory_measure": memory,
        "step_memory_growth_ratio": round(activation_ratio, 4),
        "flops_7b_64_frames": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in seven_b.items()},
        "decoder_flops_counted_over_analytic": round(on["decoder_flops_counted"] / max(on["decoder_flops_analytic"], 1), 4),
    }
    record.data["targets"] = [
        common.target(f"training step time, ST on / off ({frames} frames, batch {BATCH})", time_ratio, 1.05, "<=", "x"),
        common.target(f"peak memory ({memory}), ST on / off", memory_ratio, 1.05, "<=", "x"),
        common.target("analytic FLOPs of queries + decoder / LLaVA-Video-7B forward (64 frames)",
                      100 * seven_b["overhead_over_llava_video"], 1.0, "<", "%"),
    ]
    record.data["notes"].append(
        "7B FLOPs: Qwen2-7B + SigLIP-so400m (26 layers used) + mlp2x_gelu, 64 frames x 210 tokens + 600 text tokens, "
        "12 description tokens, logits on every position (training forward). peak_rss_mb is the whole process "
        "(Python, torch, model, optimizer state, activations); step_memory_growth_ratio compares the growth of the "
        "peak over the RSS before the first step."
    )
    record.write()
    return 0


def main(argv=None) -> int:
    p = common.parser(__doc__.splitlines()[0], repeats=6)
    p.add_argument("--variant", choices=("st_on", "st_off"), help="(internal) run one variant and print its JSON")
    args, code = common.start(p, argv)
    if args is None:
        return code
    if args.variant:
        print(json.dumps(variant(args.variant, args)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
