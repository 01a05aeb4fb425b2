"""What every benchmark shares: the offline environment, the mid-size model, timing, and the JSON record.

Each benchmark is a module with `main(argv) -> int` that writes `bench/results/<name>.json`:
    {"name", "host", "device", "config", "repeats", "torch_threads", "load_before", "load_after",
     "machine_busy", "results": {...}, "targets": [{"what", "value", "target", "met", "unit"}], "notes"}
`bench/readme_table.py` turns these files into the README's performance table.
"""

import argparse
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CACHE = Path(os.environ.get("LLAVA_ST_BENCH_CACHE", ROOT / ".cache" / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["HF_HUB_CACHE"] = str(CACHE / "hub")  # only the fake tiny SigLIP repo is read from it
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

logger = logging.getLogger("bench")

# The mid-size LLM of every model benchmark: Qwen2 layout with 8 layers (LLaVA-Video-7B has 28 layers of
# hidden 3584); small enough for a 2-core CPU, deep enough that the LLM dominates as it does at 7B.
MID_LLM = dict(hidden_size=128, num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2, intermediate_size=512)
# LLaVA-Video-7B-Qwen2 (Qwen2-7B + SigLIP-so400m at 384 px), for analytic FLOPs.
QWEN2_7B = dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, intermediate_size=18944,
                vocab_size=152064)
TOKENS_PER_FRAME = 210  # 14 x 14 pooled patches + 14 row newlines (mm_newline_position "grid")


def parser(description: str, repeats: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="cpu or cuda (a lent GPU)")
    p.add_argument("--quick", action="store_true", help="smallest configuration and 1 repeat: checks that the script runs")
    p.add_argument("--repeats", type=int, default=repeats, help="timed repeats per variant (median reported)")
    p.add_argument("--out", default=None,
                   help="JSON path (default bench/results/<name>.json; with --quick bench/out/<name>.json, not kept)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: on a shared CPU, OpenMP threads "
                   "that spin while waiting for cores were seen to make small models 10x slower)")
    return p


def prepare(args) -> Optional[str]:
    """Apply --threads and --quick; an error message when --device cannot be used here, else None."""
    torch.set_num_threads(max(args.threads, 1))
    if args.quick:
        args.repeats = 1
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        return f"--device {args.device}: no CUDA device on this machine"
    return None


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def tokenizer():
    """Qwen2TokenizerFast over Qwen's first 4,000 BPE ranks (+ the chat tokens), built offline once."""
    from llava_st.testing import build_qwen_tokenizer

    return build_qwen_tokenizer(CACHE / "tokenizer-4k", vocab_size=4000)


def siglip_repo() -> str:
    """The tiny SigLIP tower upstream accepts (hidden 1152, 384 px, patch 14 -> 729 patches, 1 layer used)."""
    from llava_st.testing import build_tiny_siglip_hub

    return build_tiny_siglip_hub(Path(os.environ["HF_HUB_CACHE"]))


def mid_llava_st(num_queries: int = 64, query_mode: str = "interleave", device: str = "cpu", seed: int = 0):
    """A random mid-size `LlavaSTQwenForCausalLM` (LLaVA-NeXT host, LLaVA-Video's settings: 210 tokens
    per 384-px frame) with MID_LLM. query_mode "none" is the same host with ST off (upstream's model).
    Returns (tokenizer with the query tokens, model in eval mode, float32, on `device`)."""
    from llava_st.testing.upstream import tiny_llava_st_qwen

    tok, model = tiny_llava_st_qwen(tokenizer(), siglip_repo(), num_queries=num_queries, seed=seed, st_query_mode=query_mode, **MID_LLM)
    model.get_vision_tower().to(device)
    return tok, model.to(device).eval()


class VisionCache:
    """Makes the vision towers of `models` return features computed once per input shape.

    The tower (SigLIP, 729 patches per frame) runs before the LLM identically for every variant a
    benchmark compares; on this CPU it would dominate every timing, so benchmarks time the LLM side
    and report the tower's own time separately (`prime`). The models must share the tower's weights
    (`share_weights`); features are computed without gradients (the tower is frozen).
    """

    def __init__(self, *models):
        self.forward = models[0].get_vision_tower().forward
        self.features = {}
        for model in models:
            model.get_vision_tower().forward = self.cached

    @staticmethod
    def key(images):
        return tuple(images.shape) if torch.is_tensor(images) else tuple(tuple(i.shape) for i in images)

    def cached(self, images):
        if self.key(images) not in self.features:
            self.prime(images)
        return self.features[self.key(images)]

    def prime(self, images, device: str = "cpu") -> float:
        """Compute and keep the features of `images` [F, 3, 384, 384]; returns the tower's seconds."""
        sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            self.features[self.key(images)] = self.forward(images)
        sync(device)
        return time.perf_counter() - start


def share_weights(src, dst) -> None:
    """Copy every parameter `dst` has from `src` (same names), so two variants differ only in ST parts.
    Token tables (embed_tokens, lm_head) may differ in rows (the query tokens): the common rows are copied."""
    source = src.state_dict()
    with torch.no_grad():
        for name, tensor in dst.state_dict().items():
            if name not in source:
                raise RuntimeError(f"variant has a parameter the source lacks: {name}")
            rows = min(tensor.shape[0], source[name].shape[0]) if tensor.ndim else None
            if tensor.ndim and tensor.shape[1:] == source[name].shape[1:]:
                tensor[:rows].copy_(source[name][:rows])
            else:
                tensor.copy_(source[name])


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_it(fn: Callable[[], object], repeats: int, device: str = "cpu", warmup: int = 1) -> List[float]:
    """Seconds of `repeats` calls of fn after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def time_interleaved(fns: Dict[str, Callable[[], object]], repeats: int, device: str = "cpu", warmup: int = 1) -> Dict[str, List[float]]:
    """Seconds per call of several variants, run round-robin (A B C A B C ...) so that load changes on a
    shared machine hit every variant alike. One untimed warmup round first."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def module_timer(module: torch.nn.Module) -> List[float]:
    """A list that receives the seconds of every forward of `module` (hooks; CPU wall time)."""
    times: List[float] = []
    starts: List[float] = []
    module.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))
    module.register_forward_hook(lambda *_: times.append(time.perf_counter() - starts.pop()))
    return times


def top_ops(fn: Callable[[], object], top: int = 8) -> List[dict]:
    """torch.profiler over one call of fn: the `top` operators by own CPU time [{op, calls, self_cpu_s, share}]."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [{"op": e.key, "calls": e.count, "self_cpu_s": round(e.self_cpu_time_total / 1e6, 4),
             "share": round(e.self_cpu_time_total / total, 4)} for e in events[:top]]


def median(values) -> float:
    return float(statistics.median(values))


def target(what: str, value: float, limit: float, op: str, unit: str = "") -> dict:
    """One target line: op "<=" or ">=" or "<" against `limit`."""
    met = {"<=": value <= limit, ">=": value >= limit, "<": value < limit}[op]
    return {"what": what, "value": round(float(value), 4), "target": f"{op} {limit:g}{unit}", "met": bool(met), "unit": unit}


def stability(ratios) -> dict:
    """How stable a ratio is over repeats: each repeat's ratio, min, max, and (max - min) / median in %."""
    med = median(ratios)
    return {"repeats": len(ratios), "ratios": [round(r, 3) for r in ratios], "min": round(min(ratios), 3),
            "max": round(max(ratios), 3), "spread_pct": round(100 * (max(ratios) - min(ratios)) / med, 1)}


def cpu_seconds(run: dict) -> float:
    """CPU seconds of all ranks of one torchrun run (each rank's core share times its call's seconds)."""
    return sum(share * seconds for share, seconds in zip(run["core_share"], run["rank_s"]))


def contention(runs: dict, records: int, ratio_of_fastest: float) -> str:
    """How much of a core each rank of the 2-rank runs had, and what a record cost in CPU seconds."""
    shares = [x for r in runs[2] for x in r["core_share"]]
    cpu = {n: median([cpu_seconds(r) for r in v]) / records * 1000 for n, v in runs.items()}
    one = median([r["core_share"][0] for r in runs[1]])
    main = median([r["main_share"][0] for r in runs[1]])
    return (f"the 2-rank runs' ranks had {min(shares):.2f}-{max(shares):.2f} of a core (median {median(shares):.2f}); "
            f"1 rank kept {one:.2f} cores busy, {main:.2f} in its main thread and {one - main:.2f} in its other threads, "
            f"so 2 ranks on 2 cores can reach at most {2 / max(one, 1.0):.2f}x; "
            f"{cpu[1]:.1f} CPU ms per record with 1 rank, {cpu[2]:.1f} with 2; the fastest runs' ratio {ratio_of_fastest:.2f}x")


def _busy_work(seconds_out, n: int = 4000) -> None:
    """A fixed CPU-bound job (single-threaded float32 matmuls); puts its wall seconds on the queue."""
    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    start = time.perf_counter()
    for _ in range(n):
        a = torch.tanh(a @ a)
    seconds_out.put(time.perf_counter() - start)


def parallel_ceiling(repeats: int = 3) -> dict:
    """What this machine gives two processes that share nothing: the same fixed CPU-bound job run alone
    and as two processes at once; ceiling = 2 x (alone s) / (together s), the best a 2-rank run of
    CPU-bound work can reach here (2.0 on two free cores). Median of `repeats`."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    alone, together = [], []
    for _ in range(repeats):
        q = ctx.Queue()
        p = ctx.Process(target=_busy_work, args=(q,))
        p.start()
        alone.append(q.get())
        p.join()
        procs = [ctx.Process(target=_busy_work, args=(q,)) for _ in range(2)]
        for p in procs:
            p.start()
        together.append(max(q.get(), q.get()))
        for p in procs:
            p.join()
    ratios = [2 * a / t for a, t in zip(alone, together)]
    return {"what": "2 processes of a fixed single-threaded CPU job / 1 (records/s), 2.0 on two free cores",
            "alone_s": [round(x, 3) for x in alone], "together_s": [round(x, 3) for x in together],
            "ceiling": round(median(ratios), 3), "stability": stability(ratios)}


def ceiling_note(ratio: float, ceiling: dict) -> str:
    """One sentence comparing a 2-rank ratio with the machine's parallel_ceiling."""
    c = ceiling["ceiling"]
    return (f"two processes of a fixed CPU-bound job reach {c:.2f}x here (parallel_ceiling, per repeat "
            f"{', '.join(f'{r:.2f}' for r in ceiling['stability']['ratios'])}): the 2-rank ratio is {100 * ratio / c:.0f}% of that")


def rank_scaling(runs: Dict[int, List[dict]], records: int, span_key: str) -> dict:
    """The 2-ranks-vs-1 summary of repeated torchrun runs. runs: {1: [run, ...], 2: [run, ...]}, each run
    {span_key: seconds of the measured span, "rank0_s", "rank_s" [per rank], "start_lag_s", "wall_s",
    "core_share" [per rank: the process's CPU s / call s, all threads], "main_share" [per rank: the main
    thread's alone]}. Returns the results fields both rank benchmarks write: the span's, rank 0's call and
    the wall seconds per run, records/s, the ratio of medians (1 rank / 2 ranks) with its stability over
    repeats, the fastest runs' ratio, per-rank core and main-thread shares, the cores one rank keeps busy
    (one_rank_cores: above 1 when threads beside the main one run in parallel, so that 2 ranks on 2 cores
    can reach at most 2 / one_rank_cores) and CPU seconds per record."""
    span = {n: [r[span_key] for r in v] for n, v in runs.items()}
    rank0 = {n: [r["rank0_s"] for r in v] for n, v in runs.items()}
    wall = {n: [r["wall_s"] for r in v] for n, v in runs.items()}
    ratios = [a / b for a, b in zip(span[1], span[2])]
    wall_ratios = [a / b for a, b in zip(wall[1], wall[2])]
    return {
        span_key: {str(n): [round(x, 3) for x in v] for n, v in span.items()},
        "rank0_call_s": {str(n): [round(x, 3) for x in v] for n, v in rank0.items()},
        "ratio_rank0_call": round(median(rank0[1]) / median(rank0[2]), 3),
        "rank_s_2_ranks": [[round(x, 3) for x in r["rank_s"]] for r in runs[2]],
        "start_lag_s_2_ranks": [round(r["start_lag_s"], 3) for r in runs[2]],
        "core_share": {str(n): [[round(x, 3) for x in r["core_share"]] for r in v] for n, v in runs.items()},
        "main_thread_share": {str(n): [[round(x, 3) for x in r["main_share"]] for r in v] for n, v in runs.items()},
        "one_rank_cores": round(median([r["core_share"][0] for r in runs[1]]), 3),
        "cpu_s_per_record": {str(n): round(median([cpu_seconds(r) for r in v]) / records, 5) for n, v in runs.items()},
        "ratio_of_fastest": round(min(span[1]) / min(span[2]), 3),
        "wall_s": {str(n): [round(x, 3) for x in v] for n, v in wall.items()},
        "records_per_s": {str(n): round(records / median(v), 3) for n, v in span.items()},
        "seconds_per_record_1_rank": round(median(span[1]) / records, 4),
        "records_per_s_end_to_end": {str(n): round(records / median(v), 3) for n, v in wall.items()},
        "ratio": round(median(span[1]) / median(span[2]), 3),
        "stability": stability(ratios),
        "ratio_end_to_end": round(median(wall[1]) / median(wall[2]), 3),
        "stability_end_to_end": stability(wall_ratios),
    }


class Record:
    """Collects one benchmark's JSON: machine state before/after, config, results, targets, notes."""

    def __init__(self, name: str, args, host: str, config: dict):
        self.name = name
        self._start = time.time()
        self.path = Path(args.out) if args.out else (RESULTS.parent / "out" if args.quick else RESULTS) / f"{name}.json"
        self.data = {
            "name": name,
            "host": host,
            "device": device_name(args.device),
            "quick": bool(args.quick),
            "repeats": args.repeats,
            "torch_threads": torch.get_num_threads(),
            "config": config,
            "load_before": list(os.getloadavg()),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "results": {},
            "targets": [],
            "notes": [],
        }

    def write(self) -> Path:
        load_after = list(os.getloadavg())
        self.data["load_after"] = load_after
        cores = os.cpu_count() or 1
        busy = max(self.data["load_before"][0], load_after[0]) > cores + 0.5
        self.data["machine_busy"] = (
            f"yes: 1-min load average {self.data['load_before'][0]:.1f} before, {load_after[0]:.1f} after on {cores} cores "
            "(other processes shared the CPU; timings are noisy)" if busy else "no"
        )
        self.data["seconds"] = round(time.time() - self._start, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")
        logger.info("%s: wrote %s", self.name, self.path)
        for t in self.data["targets"]:
            logger.info("  %s: %s (target %s) %s", t["what"], t["value"], t["target"], "met" if t["met"] else "NOT met")
        return self.path


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"



STVG_CAPTION = "the red box moving right"


def stvg_sample(frames_in_video: int = 500, fps: float = 25.0, width: int = 640, height: int = 360):
    """A real mp4 (20 s, 25 fps, 640 x 360 by default: an HC-STVG-like clip) with a moving box and a
    one-record Uni-STG STVG file over it, written once under the bench cache. Returns (data root, json path)."""
    from llava_st.data.templates import instruction
    from llava_st.testing import write_moving_box_video

    root = CACHE / "data"
    path = root / f"stvg_{frames_in_video}_{width}x{height}.json"
    if path.is_file():
        return root, path
    first, last = frames_in_video // 5, frames_in_video * 4 // 5
    name = f"stvg_{frames_in_video}_{width}x{height}.mp4"
    _, boxes = write_moving_box_video(root / name, num_frames=frames_in_video, fps=fps, width=width, height=height,
                                      span=(first, last), box_size=(width // 8, height // 6))
    record = {
        "id": "bench-stvg-0", "task": "stvg", "video": name, "caption": STVG_CAPTION,
        "span": [first / fps, last / fps], "boxes": [{"t": t / fps, "xyxy": boxes[t].tolist()} for t in range(first, last + 1)],
        "width": width, "height": height, "duration": frames_in_video / fps, "fps": fps,
        "conversations": [{"from": "human", "value": "<image>\n" + instruction("stvg", STVG_CAPTION)},
                          {"from": "gpt", "value": f"From {first / fps:.1f}s to {last / fps:.1f}s."}],
    }
    path.write_text(json.dumps([record]))
    return root, path


def upstream_data_args(root, frames: int):
    """Upstream `DataArguments` as LLaVA-Video trains (qwen_1_5, time instruction, forced uniform
    sampling of `frames` frames, SigLIP's image processor)."""
    from llava import conversation as conversation_lib
    from llava.model.multimodal_encoder.siglip_encoder import SigLipImageProcessor
    from llava.train.train import DataArguments

    from llava_st.testing.upstream import TINY_GRID_PINPOINTS

    conversation_lib.default_conversation = conversation_lib.conv_templates["qwen_1_5"]
    args = DataArguments(data_path=None, image_folder=str(root), video_folder=str(root), image_aspect_ratio="anyres_max_9",
                         frames_upbound=frames, force_sample=True, add_time_instruction=True)
    args.image_grid_pinpoints = TINY_GRID_PINPOINTS
    args.image_processor = SigLipImageProcessor()
    args.is_multimodal = True
    args.mm_use_im_start_end = False
    return args


def start(p: argparse.ArgumentParser, argv=None):
    """Parse a benchmark's arguments, set up logging and the device; returns (args, None) or (None, exit code)."""
    args = p.parse_args(argv)
    setup_logging()
    error = prepare(args)
    if error:
        logger.error(error)
        return None, 2
    return args, None
