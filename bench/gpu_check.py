"""GPU check (issue 17, item 4): a LLaVA-Video-7B-shaped llava_st model with random weights on one GPU.

    bench/gpu_check.sh                         (makes its own venv from requirements.lock, then runs this)
    python bench/gpu_check.py [--out PATH]     (a venv that has everything; CUDA)
    python bench/gpu_check.py --dry-run --out /tmp/gpu_check.json   (the same code on the CPU, tiny sizes)

The model is the LLaVA-NeXT host's LlavaSTQwenForCausalLM with LLaVA-Video-7B-Qwen2's layout
(testing.upstream.llava_video_settings: SigLIP at 384 px, mlp2x_gelu, 2x2 bilinear pooling, newline per
grid row: 210 tokens per frame) at Qwen2-7B widths (hidden 3584, 28 layers, 28 heads, 4 KV heads,
intermediate 18944, vocabulary 152064) and a SigLIP-so400m-shaped tower (hidden 1152, 27 layers, 16
heads, intermediate 4304; upstream drops the last layer), random weights, bf16, sdpa attention, 64
frames (64 queries). Every config is constructed here (no hub download); the tower is written once into
a local hub cache (upstream loads towers by repo id). It measures, in one process:

  grounding:     LlavaNextGrounder.ground on a real 640x360 mp4 (bench.common.stvg_sample), 64 frames,
                 one description, end to end: video decode + SigLIP preprocessing, tower, prefill, the
                 span answer (the grounder's default budget; random weights never stop early) and the
                 space decoder. Frames per second = 64 / seconds per call (target >= 100).
  descriptions:  the same call with 8 descriptions vs 1 (one video encoding shared).
  tube_vs_plain: LLM side (tower features cached, as bench_tube_latency): the ST model's tube (span
                 answer + decoder + tube assembly) vs the ST-off model (upstream's) answering a question
                 with as many tokens; the two models share weights.
  flash_attn:    with --flash-attn (a wheel installed): the grounding call again with the Qwen2 layers
                 switched to flash_attention_2.
then one training step ST on vs off through upstream `train()` (llava_st.train's path: LLaVA-NeXT's
argument parsing, model loading, DeepSpeed ZeRO-3 with upstream's scripts/zero3.json, its trainer) in
a torchrun subprocess each, on a saved plain LLaVA-Qwen checkpoint of the same widths with
--train-layers layers (8 by default: ZeRO-3 on one GPU keeps 16 bytes per parameter of optimizer
state, which at 28 layers exceeds one 80-141 GB GPU); the STVG record of stvg_sample at 64 frames,
batch 1, gradient checkpointing, vision tower frozen. Peak GPU memory is torch.cuda.max_memory_allocated
of each phase. The JSON is written after every phase (a time-out still leaves what was measured), to
bench/results/gpu_check.json by default.

--dry-run runs the same functions on the CPU with tiny widths (Qwen2 hidden 64 x 2 layers, the tiny
SigLIP tower, 4 frames, fp32 for inference; training as the CPU tests do: ZeRO-3 on DeepSpeed's CPU
accelerator, bf16) and checks that the script works; its numbers mean nothing.
"""

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: bench/gpu_check.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench import common  # noqa: E402  (sets the offline hub environment)

QWEN2_7B = dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, intermediate_size=18944,
                vocab_size=152064)
TINY_LLM = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128)
SO400M = dict(hidden_size=1152, layers=27, heads=16, intermediate_size=4304)
TINY_TOWER = dict(hidden_size=1152, layers=2, heads=16, intermediate_size=64)  # recipes.tiny_model's tiny SigLIP
SO400M_REPO = "local/random-siglip-so400m-patch14-384"
TINY_TOWER_REPO = "local/random-tiny-siglip-patch14-384"
DESCRIPTIONS = ["the red box moving right", "the man in the red jacket who opens the door", "the dog running on the grass",
                "the woman holding a cup", "the car turning left", "the child with a ball", "the cat on the sofa",
                "the person in a white shirt"]
QUESTION = "What is the man in the red jacket doing?"
GIB = 2**30


def sizes(dry_run: bool) -> dict:
    """Everything that differs between the GPU check and its CPU dry run."""
    if dry_run:
        return {"llm": dict(TINY_LLM), "tower": dict(TINY_TOWER), "tower_repo": TINY_TOWER_REPO, "frames": 4, "dtype": "float32",
                "device": "cpu", "train_layers": TINY_LLM["num_hidden_layers"], "repeats": 1, "tokenizer_vocab": 4000}
    return {"llm": dict(QWEN2_7B), "tower": dict(SO400M), "tower_repo": SO400M_REPO, "frames": 64, "dtype": "bfloat16",
            "device": "cuda", "train_layers": 8, "repeats": 3, "tokenizer_vocab": None}


# ---------------------------------------------------------------------------------------------- builders


def tokenizer(vocab):
    """Qwen2TokenizerFast over Qwen's first `vocab` BPE ranks (None: all 151,643), built offline once."""
    from llava_st.testing import build_qwen_tokenizer

    return build_qwen_tokenizer(common.CACHE / ("tokenizer-full" if vocab is None else f"tokenizer-{vocab // 1000}k"), vocab_size=vocab)


def build_siglip_hub(repo_id: str, tower: dict, seed: int = 0) -> str:
    """A random SigLIP vision tower of `tower`'s widths (384 px, patch 14: 729 patches) written into the
    bench hub cache (models--<org>--<name>/snapshots/<rev>, refs/main) where upstream's SigLipVisionTower
    finds it by repo id with HF_HUB_OFFLINE=1. Written once; bf16 weights for the so400m shape."""
    from transformers import SiglipImageProcessor, SiglipVisionModel

    from llava_st.testing import tiny_siglip_config

    root = Path(os.environ["HF_HUB_CACHE"]) / ("models--" + repo_id.replace("/", "--"))
    revision = "0" * 40
    snap = root / "snapshots" / revision
    if (snap / "config.json").is_file():
        return repo_id
    cfg = tiny_siglip_config(hidden_size=tower["hidden_size"], layers=tower["layers"], heads=tower["heads"],
                             intermediate_size=tower["intermediate_size"])
    torch.manual_seed(seed)
    model = SiglipVisionModel(cfg)
    if tower["layers"] > 4:
        model = model.to(torch.bfloat16)
    snap.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(snap), safe_serialization=True)
    SiglipImageProcessor(size={"height": cfg.image_size, "width": cfg.image_size}).save_pretrained(str(snap))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    return repo_id


@contextlib.contextmanager
def constructing(device: str, dtype: torch.dtype):
    """New tensors on `device` in `dtype` (random init on the GPU takes seconds where the CPU takes minutes)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def build_model(tok, siglip_repo: str, llm: dict, device: str, dtype: torch.dtype, num_queries=None, query_mode: str = "interleave",
                attn: str = "sdpa", seed: int = 0):
    """A random LLaVA-Video-layout model (testing.upstream.tiny_llava_qwen_config with `llm`'s widths):
    LlavaSTQwenForCausalLM with `num_queries` (and the query tokens added to a copy of `tok`), or with
    num_queries None upstream's plain LlavaQwenForCausalLM. Returns (tokenizer, model in eval mode)."""
    from llava.model.language_model.llava_qwen import LlavaQwenForCausalLM

    from llava_st.hosts.llava_next import LlavaSTQwenConfig, LlavaSTQwenForCausalLM
    from llava_st.hosts.llava_next.loading import add_st_tokens
    from llava_st.testing.upstream import tiny_llava_qwen_config

    st = num_queries is not None
    extra = dict(st_num_queries=num_queries, st_query_mode=query_mode) if st else {}
    config = tiny_llava_qwen_config(tok, siglip_repo, config_class=LlavaSTQwenConfig if st else None, **llm, **extra)
    config._attn_implementation = attn
    config.torch_dtype = str(dtype).replace("torch.", "")
    torch.manual_seed(seed)
    with constructing(device, dtype):
        model = (LlavaSTQwenForCausalLM if st else LlavaQwenForCausalLM)(config)
    newline = model.get_model().image_newline  # upstream leaves it torch.empty (testing.upstream.init_tiny_llava)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        newline.copy_(torch.randn(newline.shape, generator=generator) / newline.shape[0] ** 0.5)
    tok = copy.deepcopy(tok)
    if st and query_mode != "none":
        add_st_tokens(model, tok)
    model.get_vision_tower().to(device, dtype)
    return tok, model.to(device, dtype).eval()


def save_checkpoint(out: Path, tok, model) -> Path:
    """Save a plain model and its tokenizer where upstream's train() can load it (the directory name holds
    "llava" and "qwen", upstream's class rule)."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return out


# ---------------------------------------------------------------------------------------------- timing


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def seconds(fn, device: str):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


class Timer:
    """Seconds of every forward of `module` (hooks; synchronising CUDA at both ends)."""

    def __init__(self, module, device: str):
        self.device, self.times, self._start = device, [], None
        self.handles = [module.register_forward_pre_hook(self._pre), module.register_forward_hook(self._post)]

    def _pre(self, *_):
        sync(self.device)
        self._start = time.perf_counter()

    def _post(self, *_):
        sync(self.device)
        self.times.append(time.perf_counter() - self._start)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def take(self) -> float:
        total, self.times = sum(self.times), []
        return total


def peak_memory(device: str) -> dict:
    """The peak memory so far: torch.cuda.max_memory_allocated on CUDA, the process's max RSS on the CPU."""
    if device.startswith("cuda"):
        return {"gib": round(torch.cuda.max_memory_allocated() / GIB, 3), "source": "torch.cuda.max_memory_allocated"}
    return {"gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 3), "source": "ru_maxrss (CPU dry run)"}


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# ---------------------------------------------------------------------------------------------- phases


def grounding(grounder, video: str, frames: int, repeats: int, device: str, descriptions=DESCRIPTIONS[:1]) -> dict:
    """End-to-end LlavaNextGrounder.ground on `video`: seconds per call (median of `repeats` after one
    warm-up) and where they went (video decode + preprocessing, tower, space decoder, the rest: LLM
    prefill and answer)."""
    tower = Timer(grounder.model.get_vision_tower(), device)
    decoder = Timer(grounder.model.space_decoder, device)
    video_times = []
    read = grounder._video

    def timed_video(*args, **kwargs):
        start = time.perf_counter()
        out = read(*args, **kwargs)
        sync(device)
        video_times.append(time.perf_counter() - start)
        return out

    grounder._video = timed_video
    try:
        grounder.ground(video, descriptions, frames=frames)  # warm-up
        tower.take(), decoder.take(), video_times.clear()
        calls, parts, tubes = [], [], None
        for _ in range(repeats):
            s, tubes = seconds(lambda: grounder.ground(video, descriptions, frames=frames), device)
            calls.append(s)
            part = {"video_decode_preprocess": sum(video_times), "vision_tower": tower.take(), "space_decoder": decoder.take()}
            part["llm_prefill_answer_rest"] = s - sum(part.values())
            parts.append(part)
            video_times.clear()
    finally:
        grounder._video = read
        tower.remove()
        decoder.remove()
    median = common.median(calls)
    best = parts[calls.index(sorted(calls)[len(calls) // 2])]
    return {"descriptions": len(descriptions), "seconds": [round(x, 4) for x in calls], "median_s": round(median, 4),
            "frames_per_s": round(frames / median, 3), "breakdown_s": {k: round(v, 4) for k, v in best.items()},
            "answer_tokens": [len(grounder.tokenizer(t["raw_text"]).input_ids) for t in tubes],
            "status": [t["status"] for t in tubes]}


def tube_vs_plain(st_tok, st_model, plain_model, video: str, frames: int, repeats: int, device: str) -> dict:
    """bench_tube_latency's comparison on this model: LLM side, tower features cached (computed once)."""
    from llava.mm_utils import tokenizer_image_token

    from llava_st.core.layout import description_token_positions
    from llava_st.core.timespan import format_span, time_instruction
    from llava_st.core.tube import assemble_tube
    from llava_st.data.templates import instruction
    from llava_st.data.video import read_video
    from llava_st.hosts.llava_next.generation import Suffix, generate_grounded
    from llava_st.hosts.llava_next.grounder import prefix_text, suffix_text

    description = DESCRIPTIONS[1]
    array, sample = read_video(video, frames_upbound=frames, force_sample=True)
    processor = st_model.get_vision_tower().image_processor
    pixels = processor.preprocess(array, return_tensors="pt")["pixel_values"].to(device, st_model.dtype)
    size = (array.shape[2], array.shape[1])
    info = {"path": video, "width": size[0], "height": size[1], "duration": sample.duration, "fps": sample.fps}
    times = sample.times.tolist()
    span_text = format_span(times[0], times[-1])
    n_span = len(st_tok(span_text).input_ids) + 1
    prefix = tokenizer_image_token(prefix_text(time_instruction(sample.duration, sample.times)), st_tok, return_tensors="pt")
    vision = common.VisionCache(st_model, plain_model)
    tower_s = vision.prime(pixels, device)

    def suffix(question, desc=None):
        ids = st_tok(suffix_text(question)).input_ids
        return Suffix(torch.tensor(ids), description_token_positions(ids, st_tok, desc) if desc else [])

    stvg, plain = suffix(instruction("stvg", description), description), suffix(QUESTION)

    def generate(model, suffixes):
        return generate_grounded(model, prefix, [pixels], ["video"], [size], suffixes, n_span, eos_token_id=-1)

    def tube():
        answer = generate(st_model, [stvg])[0]
        return assemble_tube(description, span_text, times, answer.boxes_cxcywh, info)

    with torch.no_grad():
        timed = common.time_interleaved({"tube": tube, "plain": lambda: generate(plain_model, [plain])}, repeats, device)
    med = {k: common.median(v) for k, v in timed.items()}
    return {"answer_tokens": n_span, "prompt_tokens": int(prefix.numel()) - 1 + frames * common.TOKENS_PER_FRAME + frames,
            "times_s": {k: [round(x, 4) for x in v] for k, v in timed.items()}, "median_s": {k: round(v, 4) for k, v in med.items()},
            "vision_tower_s": round(tower_s, 4), "tube_over_plain": round(med["tube"] / med["plain"], 4)}


def use_flash_attention(model) -> None:
    """Switch the Qwen2 layers of `model` to flash_attention_2 (same parameters, another attention class)."""
    from transformers.models.qwen2 import modeling_qwen2

    model.config._attn_implementation = "flash_attention_2"
    for layer in model.get_model().layers:
        layer.self_attn.__class__ = modeling_qwen2.QWEN2_ATTENTION_CLASSES["flash_attention_2"]


def zero3_config() -> str:
    """Upstream's scripts/zero3.json (beside the installed `llava` package, or in LLAVA_NEXT_SRC)."""
    import importlib.util

    src = os.environ.get("LLAVA_NEXT_SRC") or os.path.dirname(os.path.dirname(importlib.util.find_spec("llava").origin))
    path = Path(src) / "scripts" / "zero3.json"
    if not path.is_file():
        raise FileNotFoundError(f"upstream's DeepSpeed config {path} is missing (set LLAVA_NEXT_SRC to the LLaVA-NeXT source)")
    return str(path)


def train_command(checkpoint: Path, data: Path, root: Path, out: Path, result: Path, siglip_repo: str, frames: int, st: bool,
                  port: int) -> list:
    """torchrun (1 process) of this file's --train-entry: upstream train() through llava_st's entry, ZeRO-3."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", str(port),
           str(Path(__file__).resolve()), "--train-entry", str(result),
           "--deepspeed", zero3_config(), "--model_name_or_path", str(checkpoint), "--model_class_name", "LlavaSTQwen",
           "--st_num_queries", str(frames), "--version", "qwen_1_5", "--data_path", str(data), "--image_folder", str(root),
           "--video_folder", str(root), "--mm_tunable_parts", "mm_mlp_adapter,mm_language_model", "--vision_tower", siglip_repo,
           "--mm_projector_type", "mlp2x_gelu", "--mm_vision_select_layer", "-2", "--mm_use_im_start_end", "False",
           "--mm_use_im_patch_token", "False", "--image_aspect_ratio", "anyres_max_9",
           "--image_grid_pinpoints", "[[384, 384], [384, 768], [768, 384], [768, 768]]", "--mm_patch_merge_type", "spatial_unpad",
           "--mm_newline_position", "grid", "--mm_spatial_pool_stride", "2", "--mm_spatial_pool_mode", "bilinear",
           "--add_time_instruction", "True", "--force_sample", "True", "--frames_upbound", str(frames), "--bf16", "True",
           "--attn_implementation", "sdpa", "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "1",
           "--gradient_accumulation_steps", "1", "--save_strategy", "no", "--learning_rate", "1e-5", "--weight_decay", "0.",
           "--warmup_ratio", "0.0", "--lr_scheduler_type", "constant", "--logging_steps", "1", "--model_max_length", "32768",
           "--gradient_checkpointing", "True", "--dataloader_num_workers", "0", "--lazy_preprocess", "True", "--report_to", "none",
           "--seed", "0"]
    return cmd if st else cmd + ["--st_query_mode", "none"]


def train_entry(argv) -> int:
    """`--train-entry RESULT.json <upstream train arguments>` (run by torchrun): llava_st.train's path with
    a callback timing every optimizer step (forward + backward + ZeRO-3 step; data loading excluded), the
    final save skipped (the step is measured, not the save); rank 0 writes the step times, losses and peak
    memory to RESULT.json."""
    from llava.train import train as upstream
    from transformers import TrainerCallback

    from llava_st.hosts.llava_next import train as st_train

    result, rest = Path(argv[0]), argv[1:]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    record = {"step_s": [], "loss": []}

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            sync(device)
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync(device)
            record["step_s"].append(time.perf_counter() - self.start)

        def on_train_begin(self, args, state, control, **kwargs):
            from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

            record["zero3"] = bool(is_deepspeed_zero3_enabled())

        def on_train_end(self, args, state, control, **kwargs):
            record["loss"] = [h["loss"] for h in state.log_history if "loss" in h]

    class TimedTrainer(st_train.LlavaSTTrainer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.add_callback(StepTimer())

    st_train.install()
    upstream.LLaVATrainer = TimedTrainer
    upstream.safe_save_model_for_hf_trainer = lambda trainer, output_dir: None
    reset_peak(device)
    st_train.run(rest)
    if int(os.environ.get("RANK", "0")) == 0:
        record["peak_memory"] = peak_memory(device)
        result.write_text(json.dumps(record))
    return 0


def training(args, cfg, tok, siglip_repo: str, work: Path, deadline: float) -> dict:
    """One step ST on vs off through upstream train() (ZeRO-3), each in its own torchrun process."""
    from llava_st.data.templates import instruction
    from llava_st.testing import write_moving_box_video

    device, dtype = cfg["device"], getattr(torch, cfg["dtype"])
    llm = {**cfg["llm"], "num_hidden_layers": cfg["train_layers"]}
    start = time.perf_counter()
    tok_plain, plain = build_model(tok, siglip_repo, llm, device, torch.bfloat16 if device == "cuda" else dtype, num_queries=None)
    checkpoint = save_checkpoint(work / "llava-qwen-random", tok_plain, plain.cpu() if device == "cpu" else plain)
    del plain
    reset_peak(device)
    checkpoint_s = time.perf_counter() - start
    root = work / "data"
    fps, n = 25.0, 500
    name = "stvg_train.mp4"
    _, boxes = write_moving_box_video(root / name, num_frames=n, fps=fps, width=640, height=360, span=(n // 5, n * 4 // 5),
                                      box_size=(80, 60))
    caption = DESCRIPTIONS[0]
    first, last = n // 5, n * 4 // 5
    data = root / "train.json"
    data.write_text(json.dumps([{
        "id": "gpu-check-stvg-0", "task": "stvg", "video": name, "caption": caption, "span": [first / fps, last / fps],
        "boxes": [{"t": t / fps, "xyxy": boxes[t].tolist()} for t in range(first, last + 1)], "width": 640, "height": 360,
        "duration": n / fps, "fps": fps,
        "conversations": [{"from": "human", "value": "<image>\n" + instruction("stvg", caption)},
                          {"from": "gpt", "value": f"From {first / fps:.1f}s to {last / fps:.1f}s."}]}]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(common.ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1" if device == "cpu" else "8")}
    if device == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
    out = {"through": "upstream LLaVA-NeXT train() via llava_st.train's path (hosts.llava_next.train.run), DeepSpeed ZeRO-3 "
                      "(upstream scripts/zero3.json), torchrun 1 process",
           "layers": cfg["train_layers"], "frames": cfg["frames"], "batch": 1, "gradient_checkpointing": True,
           "tunable_parts": "mm_mlp_adapter,mm_language_model (tower frozen)", "steps": 2, "timed_step": "the second (the first warms up)",
           "checkpoint_build_save_s": round(checkpoint_s, 2)}
    for variant, st in (("st_on", True), ("st_off", False)):
        left = deadline - time.time()
        if left < 60:
            out[variant] = {"skipped": f"time budget: {left:.0f} s left"}
            continue
        result = work / f"train_{variant}.json"
        cmd = train_command(checkpoint, data, root, work / f"out_{variant}", result, siglip_repo, cfg["frames"], st,
                            29500 + os.getpid() % 300 + (0 if st else 1))
        began = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=common.ROOT, env=env, capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            out[variant] = {"error": f"timed out after {left:.0f} s (time budget)"}
            continue
        wall = time.perf_counter() - began
        if proc.returncode or not result.is_file():
            out[variant] = {"error": f"train() exited {proc.returncode}", "log_tail": (proc.stdout + proc.stderr)[-3000:]}
            continue
        r = json.loads(result.read_text())
        out[variant] = {"step_s": [round(x, 4) for x in r["step_s"]], "loss": r["loss"], "peak_memory": r["peak_memory"],
                        "zero3": r.get("zero3", False), "process_s": round(wall, 2)}
    on, off = out.get("st_on", {}), out.get("st_off", {})
    if on.get("step_s") and off.get("step_s"):
        out["step_st_on_over_off"] = round(on["step_s"][-1] / off["step_s"][-1], 4)
        out["peak_memory_st_on_over_off"] = round(on["peak_memory"]["gib"] / off["peak_memory"]["gib"], 4)
    return out


# ---------------------------------------------------------------------------------------------- main


def environment(args) -> dict:
    import transformers

    env = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "cuda": torch.version.cuda, "flash_attn": args.flash_attn_status or "not checked"}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / GIB, 1)
    try:
        import deepspeed

        env["deepspeed"] = deepspeed.__version__
    except Exception as exc:  # deepspeed probes the accelerator at import
        env["deepspeed"] = f"import failed: {str(exc)[:200]}"
    if args.install_seconds is not None:
        env["install_s"] = args.install_seconds
    return env


def finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def run(args) -> int:
    from llava_st.hosts.llava_next.grounder import LlavaNextGrounder

    cfg = sizes(args.dry_run)
    if args.train_layers:
        cfg["train_layers"] = args.train_layers
    if args.layers:
        cfg["llm"]["num_hidden_layers"] = args.layers
    device, dtype = cfg["device"], getattr(torch, cfg["dtype"])
    if device == "cuda" and not torch.cuda.is_available():
        common.logger.error("gpu_check: no CUDA device here (use --dry-run on a CPU)")
        return 2
    deadline = time.time() + args.budget_s
    torch.set_num_threads(max(args.threads, 1))
    ns = argparse.Namespace(out=args.out, quick=args.dry_run, repeats=cfg["repeats"], device=device)
    record = common.Record("gpu_check", ns, "llava_next", {
        "model": "LlavaSTQwenForCausalLM, LLaVA-Video-7B-Qwen2 layout (testing.upstream.llava_video_settings), random weights",
        "llm": cfg["llm"], "tower": {**cfg["tower"], "image_size": 384, "patch_size": 14, "repo": cfg["tower_repo"]},
        "frames": cfg["frames"], "queries": cfg["frames"], "dtype": cfg["dtype"], "attention": "sdpa",
        "tokens_per_frame": common.TOKENS_PER_FRAME, "train_layers": cfg["train_layers"],
        "layers_note": ("inference at the full 28 layers; training with --train-layers layers (ZeRO-3 on one GPU keeps 16 bytes "
                        "per parameter: 28 layers would not fit with activations)") if not args.dry_run else "dry run: tiny widths",
        "budget_s": args.budget_s})
    record.data["dry_run"] = bool(args.dry_run)
    record.data["environment"] = environment(args)
    record.data["notes"].append("Dry run on the CPU with tiny widths: checks the script, the numbers mean nothing."
                                if args.dry_run else "Random weights: answers use the whole token budget, as the trained format's.")
    results = record.data["results"]

    def save():
        results["peak_memory_so_far"] = peak_memory(device)
        record.write()

    start = time.perf_counter()
    tok = tokenizer(cfg["tokenizer_vocab"])
    siglip_repo = build_siglip_hub(cfg["tower_repo"], cfg["tower"])
    st_tok, st_model = build_model(tok, siglip_repo, cfg["llm"], device, dtype, num_queries=cfg["frames"])
    results["build_s"] = round(time.perf_counter() - start, 2)
    results["parameters_b"] = round(sum(p.numel() for p in st_model.parameters()) / 1e9, 4)
    root, path = common.stvg_sample()
    video = str(root / json.loads(path.read_text())[0]["video"])
    grounder = LlavaNextGrounder(st_model, st_tok, st_model.get_vision_tower().image_processor, frames=cfg["frames"])
    reset_peak(device)
    with torch.no_grad():
        results["grounding"] = grounding(grounder, video, cfg["frames"], cfg["repeats"], device)
        results["peak_memory_grounding"] = peak_memory(device)
        common.logger.info("grounding: %s", results["grounding"])
        save()
        eight = grounding(grounder, video, cfg["frames"], cfg["repeats"], device, DESCRIPTIONS)
        results["descriptions"] = {"1": results["grounding"]["median_s"], "8": eight["median_s"], "eight": eight,
                                   "ratio_8_over_1": round(eight["median_s"] / results["grounding"]["median_s"], 4)}
        results["peak_memory_8_descriptions"] = peak_memory(device)
        save()
    if args.flash_attn:
        try:
            use_flash_attention(st_model)
            with torch.no_grad():
                results["grounding_flash_attn"] = grounding(grounder, video, cfg["frames"], cfg["repeats"], device)
        except Exception as exc:  # a flash-attn wheel that does not fit this GPU or torch
            results["grounding_flash_attn"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        finally:
            st_model.config._attn_implementation = "sdpa"
            from transformers.models.qwen2 import modeling_qwen2

            for layer in st_model.get_model().layers:
                layer.self_attn.__class__ = modeling_qwen2.QWEN2_ATTENTION_CLASSES["sdpa"]
        save()
    _, plain_model = build_model(tok, siglip_repo, cfg["llm"], device, dtype, num_queries=cfg["frames"], query_mode="none")
    common.share_weights(st_model, plain_model)
    results["tube_vs_plain"] = tube_vs_plain(st_tok, st_model, plain_model, video, cfg["frames"], cfg["repeats"], device)
    results["peak_memory_inference"] = peak_memory(device)
    save()
    del grounder, st_model, plain_model
    reset_peak(device)
    if args.skip_training:
        results["training"] = {"skipped": "--skip-training"}
    else:
        import tempfile

        with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
            results["training"] = training(args, cfg, tok, siglip_repo, Path(work), deadline)
    g = results["grounding"]
    record.data["targets"] = [
        common.target(f"frames/s grounded end to end, {cfg['frames']} frames, 7B-shaped, one GPU", g["frames_per_s"], 100, ">="),
        common.target("8 descriptions / 1, end to end", results["descriptions"]["ratio_8_over_1"], 1.25, "<=", "x"),
        common.target("tube / plain answer latency (LLM side)", results["tube_vs_plain"]["tube_over_plain"], 1.15, "<=", "x"),
    ]
    t = results["training"]
    if "step_st_on_over_off" in t:
        record.data["targets"].append(common.target("training step ST on / off (ZeRO-3, upstream train())", t["step_st_on_over_off"],
                                                    1.2, "<=", "x"))
    record.data["notes"].append(
        f"{g['frames_per_s']:.1f} frames/s grounded ({g['median_s']:.3f} s per {cfg['frames']}-frame call: "
        + ", ".join(f"{k} {v:.3f} s" for k, v in g["breakdown_s"].items()) + "); DEViL reports 14.33 FPS with a 7B video LLM.")
    results["seconds_total"] = round(time.perf_counter() - start, 1)
    save()
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--train-entry"]:
        return train_entry(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="the same code on the CPU with tiny sizes (4 frames, fp32)")
    p.add_argument("--out", default=None, help="JSON path (default bench/results/gpu_check.json; a dry run needs --out)")
    p.add_argument("--layers", type=int, default=None, help="LLM layers for inference (default 28; 2 in a dry run)")
    p.add_argument("--train-layers", type=int, default=None, help="LLM layers of the training step (default 8)")
    p.add_argument("--skip-training", action="store_true", help="leave out the two train() runs")
    p.add_argument("--flash-attn", action="store_true", help="also time grounding with flash_attention_2 (flash-attn installed)")
    p.add_argument("--flash-attn-status", default=None, help="how gpu_check.sh fared installing flash-attn (recorded)")
    p.add_argument("--install-seconds", type=float, default=None, help="the venv's install time (recorded)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="wall-clock budget: a training run is not started with under 60 s of it left (default 450; a dry run: none)")
    p.add_argument("--work-dir", default=None, help="where the training checkpoint and outputs go (default: the temp dir)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 in a dry run, all cores on a GPU)")
    args = p.parse_args(argv)
    if args.dry_run and not args.out:
        p.error("--dry-run writes no result into bench/results: give --out PATH")
    if args.budget_s is None:
        args.budget_s = 1e6 if args.dry_run else 450.0
    if args.threads is None:
        args.threads = 1 if args.dry_run else (os.cpu_count() or 1)
    common.setup_logging()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
