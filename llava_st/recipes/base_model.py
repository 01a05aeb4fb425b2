"""The base model: the analogue of LLaVA-Video for the synthetic domain (issue 16, item 1).

The tiny LLaVA-OneVision of the demo recipe (recipes.synthetic_stg: Qwen's first 4,000 BPE ranks, SigLIP
64 px / patch 8 pooled to 4 x 4 tokens per frame, an MLP projector, Qwen2 hidden 128 with 2 layers, the
same initialisation) pretrained from random weights on synthetic clips (data.synthetic) with text-only
tasks: a caption of the object that enters or leaves ("a small red circle moves left from 2 s to 6 s")
and questions on colour, shape, size, motion, count and time, all answered in text. There are no query
tokens and no space decoder: the checkpoint is a plain transformers LlavaOnevisionForConditionalGeneration
(its tokenizer has <image> and <video>, nothing else added), so every grounding variant can be converted
from it (hosts.hf.convert_base, or train_hf with the checkpoint path and an STConfig).

Training goes through the transformers host's one training path (train_hf) with the model wrapped as an
ST model of query_mode "none" (no queries, no decoder: the plain forward and the text loss); the weights
are then written back as the plain model. Data: `train_videos` clips of seed `data_seed`, one Uni-STG
record (task "qa") per clip holding every question of the clip as a multi-turn conversation in a seeded
random order. Evaluation: the same questions on clips of HELD_OUT_SEED (never trained on), one question
per prompt (greedy, hosts.hf grounder's `answer`), scored by exact match after normalisation; captions by
exact match and by the share of their six fields (size, colour, shape, motion, start, end) that are right.

    python -m llava_st.recipes.base_model [--out DIR] [--results JSON] [--steps N]   (make base)
"""

import argparse
import copy
import json
import logging
import os
import re
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.config import STConfig
from ..core.timespan import format_span
from ..data.schema import validate_record
from ..data.synthetic import Shape, make_stvg
from .synthetic_stg import FRAMES, VIDEOS, init_identity_blocks, init_projector, init_vision_positions

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = ROOT / "llava_st" / "checkpoints" / "llava-st-base"
RESULTS = ROOT / "bench" / "results" / "base_model.json"
CACHE = ROOT / ".cache" / "base-model"

# The demo's clips (64 x 64, 8 frames at 1 fps, the target visible >= 3 frames) with up to 3 distractors.
BASE_VIDEOS = replace(VIDEOS, max_distractors=3)
TRAIN_SEED = 10  # the clips of the base model's training data (the demo recipe trains on seeds 0-4)
HELD_OUT_SEED = 2025  # held-out clips: never used in training, by this recipe or the demo's
KINDS = ("caption", "colour", "shape", "size", "motion", "count", "time")
ATTRIBUTES = ("size", "color", "shape", "motion")
# Text-only model: no queries, no decoder (query_mode "none"); num_queries only sets the grounder's defaults.
BASE_ST = STConfig(num_queries=FRAMES, query_mode="none")
VISUAL_TOKENS = ("<image>", "<video>")


@dataclass
class BaseRecipe:
    """The base model's recipe: model size as the demo's (recipes.synthetic_stg.Recipe), one cosine stage
    of `steps` optimizer steps at batch `batch_size` peaking at `learning_rate` after `warmup` steps,
    `train_videos` clips of seed `data_seed`; `seed` is the weights' initialisation and the data order;
    `eval_videos` held-out clips of `eval_seed`."""

    seed: int = 0
    data_seed: int = TRAIN_SEED
    train_videos: int = 6000
    steps: int = 3000
    batch_size: int = 8
    learning_rate: float = 1e-3
    warmup: int = 100
    scheduler: str = "cosine"
    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 64
    text_hidden: int = 128
    text_layers: int = 2
    threads: int = 1
    eval_videos: int = 200
    eval_seed: int = HELD_OUT_SEED


# ---- questions ----------------------------------------------------------------------------------------
def _seconds(t: float) -> str:
    return f"{t:g} s"


def caption_text(obj: Shape, fps: float) -> str:
    """'a small red circle moves left from 2 s to 6 s' (visible frames first..last at `fps`)."""
    verb = "stays still" if obj.motion == "still" else f"moves {obj.motion}"
    return f"a {obj.size} {obj.color} {obj.shape} {verb} from {_seconds(obj.first / fps)} to {_seconds(obj.last / fps)}"


CAPTION_RE = re.compile(
    r"^a (?P<size>\w+) (?P<color>\w+) (?P<shape>\w+) (?:moves (?P<motion>\w+)|stays (?P<still>still)) "
    r"from (?P<start>[\d.]+) s to (?P<end>[\d.]+) s$"
)
CAPTION_FIELDS = ("size", "color", "shape", "motion", "start", "end")


def caption_fields(text: str) -> Optional[dict]:
    """The six fields of a caption in caption_text's form, or None when it does not have that form."""
    m = CAPTION_RE.match(normalise(text))
    if m is None:
        return None
    fields = m.groupdict()
    fields["motion"] = fields.pop("still") or fields["motion"]
    return fields


def referent(obj: Shape, scene: Sequence[Shape], asked: str, rng) -> Optional[str]:
    """The shortest description of `obj` by attributes other than `asked` that no other object of the
    scene matches ("the red object", "the small circle that moves left"); subsets of one size are tried
    in a seeded order. None when no description singles it out."""
    from itertools import combinations

    usable = [a for a in ATTRIBUTES if a != asked]
    for n in range(1, len(usable) + 1):
        subsets = list(combinations(usable, n))
        for k in rng.permutation(len(subsets)):
            subset = subsets[int(k)]
            if not any(all(getattr(o, a) == getattr(obj, a) for a in subset) for o in scene if o is not obj):
                return _describe(obj, subset)
    return None


def _describe(obj: Shape, subset: Sequence[str]) -> str:
    words = [getattr(obj, a) for a in ("size", "color") if a in subset]
    noun = obj.shape if "shape" in subset else "object"
    text = "the " + " ".join(words + [noun])
    if "motion" in subset:
        text += " that stays still" if obj.motion == "still" else f" that moves {obj.motion}"
    return text


def clip_questions(scene: Sequence[Shape], fps: float, num_frames: int, rng) -> List[dict]:
    """Every question of one clip, [{"kind", "question", "answer"}] in KINDS order: the caption of the
    target (element 0 of the scene: the object that enters or leaves; skipped when it is visible
    throughout), colour / shape / size / motion of a random object described without the asked
    attribute, the number of objects, and the target's visible span (format_span, the time template)."""
    target = scene[0]
    items = []
    if not (target.first == 0 and target.last == num_frames - 1):
        items.append({"kind": "caption", "question": "Describe the object that enters or leaves the video.",
                      "answer": caption_text(target, fps)})
    asks = {
        "colour": ("color", "What colour is {}?"),
        "shape": ("shape", "What shape is {}?"),
        "size": ("size", "Is {} small or large?"),
        "motion": ("motion", "Which way does {} move?"),
    }
    for kind, (attr, template) in asks.items():
        for k in rng.permutation(len(scene)):
            obj = scene[int(k)]
            ref = referent(obj, scene, attr, rng)
            if ref is not None:
                items.append({"kind": kind, "question": template.format(ref), "answer": getattr(obj, attr)})
                break
    items.append({"kind": "count", "question": "How many objects are in the video?", "answer": str(len(scene))})
    ref = referent(target, scene, "time", rng)
    if ref is not None:
        items.append({"kind": "time", "question": f"When is {ref} visible?", "answer": format_span(target.first / fps, target.last / fps)})
    return items


def normalise(text: str) -> str:
    """Lower case, single spaces, no surrounding spaces or final full stop."""
    return " ".join(str(text).lower().split()).rstrip(".").strip()


def score_answer(predicted: str, expected: str) -> int:
    """1 when the answer equals the expected one after normalisation, else 0."""
    return int(normalise(predicted) == normalise(expected))


def score_caption(predicted: str, expected: str) -> Tuple[int, float]:
    """(exact match 0/1, share of the six caption fields that are right; 0 for a caption not in the form)."""
    want, got = caption_fields(expected), caption_fields(predicted)
    if want is None:
        raise ValueError(f"not a caption of the recipe's form: {expected!r}")
    partial = 0.0 if got is None else sum(got[f] == want[f] for f in CAPTION_FIELDS) / len(CAPTION_FIELDS)
    return score_answer(predicted, expected), partial


# ---- data ---------------------------------------------------------------------------------------------
def make_clip(index: int, seed: int, config=BASE_VIDEOS, split: str = "base"):
    """One clip: (frames uint8 [num_frames, H, W, 3], Uni-STG "qa" record with every question of the clip
    as turns in a seeded random order, the questions in KINDS order). Deterministic in (seed, index)."""
    frames, stvg, scene = make_stvg(index, seed, config, split)
    rng = np.random.default_rng([seed, index, 16])
    items = clip_questions(scene, config.fps, config.num_frames, rng)
    order = rng.permutation(len(items))
    conversations = []
    for n, k in enumerate(order):
        item = items[int(k)]
        conversations += [{"from": "human", "value": ("<image>\n" if n == 0 else "") + item["question"]},
                          {"from": "gpt", "value": item["answer"]}]
    sid = f"base-{split}-{seed}-{index:05d}"
    record = {"id": sid, "task": "qa", "video": f"videos/{sid}.mp4", "conversations": conversations,
              "duration": stvg["duration"], "fps": stvg["fps"]}
    return frames, record, items


def write_clips(out_dir, num: int, seed: int, split: str, config=BASE_VIDEOS) -> Tuple[List[dict], List[List[dict]]]:
    """Write `num` clips (mp4 under videos/, `<split>.json`: the records, `<split>.questions.json`: each
    clip's questions) under `out_dir`; a split written with the same arguments is read back.
    Returns (records, questions per clip)."""
    from ..data.video import write_video

    out = Path(out_dir)
    index_path, questions_path, manifest_path = (out / f"{split}{s}.json" for s in ("", ".questions", ".manifest"))
    manifest = {"num": num, "seed": seed, "config": asdict(config), "kinds": list(KINDS)}
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) == manifest and questions_path.is_file():
        records = json.loads(index_path.read_text())
        if all((out / r["video"]).is_file() for r in records):
            return records, json.loads(questions_path.read_text())
    records, questions = [], []
    for i in range(num):
        frames, record, items = make_clip(i, seed, config, split)
        problems = validate_record(record)
        if problems:
            raise RuntimeError(f"the recipe wrote an invalid record: {problems}")
        write_video(out / record["video"], frames, config.fps)
        records.append(record)
        questions.append(items)
    out.mkdir(parents=True, exist_ok=True)
    index_path.write_text(json.dumps(records))
    questions_path.write_text(json.dumps(questions))
    manifest_path.write_text(json.dumps(manifest))
    return records, questions


# ---- model --------------------------------------------------------------------------------------------
def build_base(tokenizer, recipe: BaseRecipe):
    """A random plain LlavaOnevisionForConditionalGeneration of the recipe's sizes with the demo recipe's
    initialisation (sine-cosine tower positions, unit-scale projector, identity residual blocks), seeded.
    `tokenizer` gets <image> and <video> (the config's image/video token ids)."""
    import torch
    from transformers import LlavaOnevisionForConditionalGeneration

    from .tiny_model import tiny_onevision_config

    missing = [t for t in VISUAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    config = tiny_onevision_config(tokenizer, image_size=recipe.image_size, patch_size=recipe.patch_size,
                                   vision_hidden=recipe.vision_hidden, text_hidden=recipe.text_hidden, text_layers=recipe.text_layers)
    config.image_token_index, config.video_token_index = tokenizer.convert_tokens_to_ids(list(VISUAL_TOKENS))
    torch.manual_seed(recipe.seed)
    model = LlavaOnevisionForConditionalGeneration(config)
    init_vision_positions(model)
    init_projector(model)
    init_identity_blocks(model)
    return model.eval()


def to_st(base, tokenizer):
    """The base as a transformers-host model of query_mode "none" (no queries, no decoder) and its
    processor, for train_hf and the grounder; the base's weights are shared by copy."""
    from ..hosts.hf import convert_base

    return convert_base(base, copy.deepcopy(tokenizer), BASE_ST)


def to_plain(st_model):
    """The plain LlavaOnevisionForConditionalGeneration holding an ST model's weights (mode "none": it has
    exactly the plain model's parameters)."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    kwargs = st_model.config.to_dict()
    for key in [k for k in kwargs if k.startswith("st_")] + ["model_type", "architectures", "transformers_version", "_name_or_path"]:
        kwargs.pop(key, None)
    plain = LlavaOnevisionForConditionalGeneration(LlavaOnevisionConfig(**kwargs))
    plain.load_state_dict(st_model.state_dict(), strict=True)
    return plain.eval()


def save_base(model, tokenizer, out_dir) -> Path:
    """model.safetensors + config.json, the tokenizer and LLaVA-OneVision's processor (image and video
    processors of the tower's size)."""
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    size = model.config.vision_config.image_size
    image = LlavaOnevisionImageProcessor(size={"height": size, "width": size},
                                         image_grid_pinpoints=[[size * h, size * w] for h in (1, 2, 3) for w in (1, 2, 3)])
    video = LlavaOnevisionVideoProcessor(size={"height": size, "width": size}, image_mean=image.image_mean, image_std=image.image_std)
    tokens = (size // model.config.vision_config.patch_size) ** 2
    processor = LlavaOnevisionProcessor(image_processor=image, tokenizer=tokenizer, video_processor=video, num_image_tokens=tokens,
                                        vision_feature_select_strategy="full")
    processor.save_pretrained(str(out))
    return out


def load_base(path):
    """(plain LlavaOnevisionForConditionalGeneration in eval mode, tokenizer) of a base checkpoint."""
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(str(path), use_safetensors=True)
    return model.eval(), AutoTokenizer.from_pretrained(str(path))


def base_grounder(model, tokenizer, frames: int = FRAMES):
    """A grounder (llava_st.api.load_grounder) over the plain base, converted to query_mode "none" (no
    queries, no decoder: the same forward) through a temporary ST checkpoint; its `answer` asks a question."""
    from ..api import load_grounder
    from ..hosts.hf import save_st_model

    st_model, processor = to_st(model, tokenizer)
    with tempfile.TemporaryDirectory(prefix="llava-st-base-eval-") as tmp:
        save_st_model(st_model, processor, tmp)
        return load_grounder(tmp, frames=frames)


# ---- evaluation ---------------------------------------------------------------------------------------
def evaluate_base(model, tokenizer, data_dir, num: int, seed: int = HELD_OUT_SEED, max_new_tokens: int = 32,
                  keep_answers: int = 0) -> dict:
    """Ask every question of `num` clips of `seed` (one question per prompt, greedy) of a plain base model.
    Returns {"qa": {kind: {"accuracy", "correct", "n", "majority_baseline"}}, "caption": {"exact",
    "partial", "n"}, "clips", "seed", "answers": the first `keep_answers` clips' answers}."""
    records, questions = write_clips(data_dir, num, seed, "heldout")
    grounder = base_grounder(model, tokenizer)
    scores: Dict[str, List[int]] = {k: [] for k in KINDS}
    partial: List[float] = []
    answers: Dict[str, List[str]] = {k: [] for k in KINDS}
    kept = []
    for n, (record, items) in enumerate(zip(records, questions)):
        video = str(Path(data_dir) / record["video"])
        got = []
        for item in items:
            text = grounder.answer(video, item["question"], max_new_tokens=max_new_tokens)
            if item["kind"] == "caption":
                exact, part = score_caption(text, item["answer"])
                partial.append(part)
            else:
                exact = score_answer(text, item["answer"])
            scores[item["kind"]].append(exact)
            answers[item["kind"]].append(normalise(item["answer"]))
            got.append({"kind": item["kind"], "question": item["question"], "expected": item["answer"], "answer": text, "correct": exact})
        if n < keep_answers:
            kept.append({"id": record["id"], "answers": got})
    qa = {}
    for kind in KINDS:
        if kind == "caption" or not scores[kind]:
            continue
        s = scores[kind]
        qa[kind] = {"accuracy": round(sum(s) / len(s), 4), "correct": int(sum(s)), "n": len(s),
                    "majority_baseline": round(Counter(answers[kind]).most_common(1)[0][1] / len(s), 4)}
    caption = {"exact": round(sum(scores["caption"]) / max(1, len(scores["caption"])), 4),
               "partial": round(sum(partial) / max(1, len(partial)), 4), "n": len(scores["caption"])}
    return {"seed": seed, "clips": num, "qa": qa, "caption": caption, "answers": kept}


# ---- the recipe ---------------------------------------------------------------------------------------
def train_base(out_dir, recipe: Optional[BaseRecipe] = None, data_dir=None, logging_steps: int = 50, tokenizer=None) -> dict:
    """Train the base model and save it (plain LLaVA-OneVision, safetensors) to `out_dir`.
    Returns {"recipe", "st_wrapper", "seconds", "data_seconds", "log_history"}; data under `data_dir`
    (default .cache/base-model/data, reused when present). tokenizer: Qwen's first 4,000 BPE ranks
    (recipes.tiny_model.build_qwen_tokenizer, built under data_dir when not given; a copy is used)."""
    import torch

    from ..hosts.hf.train import train_hf
    from .tiny_model import build_qwen_tokenizer

    recipe = recipe or BaseRecipe()
    torch.set_num_threads(recipe.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    data_dir = Path(data_dir or CACHE / "data")
    if tokenizer is None:
        tokenizer = build_qwen_tokenizer(data_dir / "tokenizer-4k", vocab_size=4000)
    tokenizer = copy.deepcopy(tokenizer)
    t0 = time.time()
    records, _ = write_clips(data_dir, recipe.train_videos, recipe.data_seed, "train")
    data_seconds = time.time() - t0
    base = build_base(tokenizer, recipe)
    base_grounder(base, tokenizer)  # imports every host module the evaluation needs, before training
    model, processor = to_st(base, tokenizer)
    start = time.time()
    result = train_hf(
        model,
        records,
        data_dir,
        processor=processor,
        frames=FRAMES,
        max_steps=recipe.steps,
        batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        seed=recipe.seed,
        logging_steps=max(1, min(logging_steps, recipe.steps // 10)),
        lr_scheduler_type=recipe.scheduler,
        warmup_steps=min(recipe.warmup, recipe.steps // 10),
        weight_decay=0.0,
        max_grad_norm=1.0,
    )
    seconds = time.time() - start
    save_base(to_plain(result.model), tokenizer, out_dir)
    return {"recipe": asdict(recipe), "st_wrapper": asdict(BASE_ST), "seconds": round(seconds, 1), "data_seconds": round(data_seconds, 1),
            "log_history": result.log_history}


def checkpoint_bytes(path, without=("recipe.json",)) -> int:
    """Bytes of every file under `path`, those named in `without` apart."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and p.name not in without)


SPOT_CLIPS = 4  # held-out clips whose answers recipe.json keeps verbatim (tests reproduce them)


def run(out_dir=CHECKPOINT, results=RESULTS, recipe: Optional[BaseRecipe] = None, data_dir=None, logging_steps: int = 50,
        tokenizer=None) -> dict:
    """Train, evaluate on held-out clips, write `out_dir`/recipe.json and the results JSON (None: none).
    Returns the results (recipe.json holds the same and the training log)."""
    import platform

    import torch

    recipe = recipe or BaseRecipe()
    data_dir = Path(data_dir or CACHE / "data")
    load_before = os.getloadavg()[0]
    info = train_base(out_dir, recipe, data_dir, logging_steps, tokenizer)
    model, tokenizer = load_base(out_dir)
    t0 = time.time()
    heldout = evaluate_base(model, tokenizer, data_dir, recipe.eval_videos, recipe.eval_seed, keep_answers=SPOT_CLIPS)
    eval_seconds = time.time() - t0
    logged = [row for row in info["log_history"] if "loss" in row]
    summary = {
        "name": "base_model",
        "what": "the tiny LLaVA-OneVision of the demo recipe pretrained on the synthetic domain with text-only QA and captions "
                "(no queries, no space decoder); llava_st.recipes.base_model",
        "recipe": info["recipe"],
        "st_wrapper_for_training": info["st_wrapper"],
        "steps": recipe.steps,
        "seeds": {"init_and_order": recipe.seed, "train_clips": recipe.data_seed, "heldout_clips": recipe.eval_seed},
        "train_seconds": info["seconds"],
        "data_seconds": info["data_seconds"],
        "eval_seconds": round(eval_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "device": f"cpu ({platform.processor() or platform.machine()}), {os.cpu_count()} cores, shared",
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "heldout": {k: v for k, v in heldout.items() if k != "answers"},
        "spot_check": {"clips": SPOT_CLIPS, "answers": heldout["answers"]},
        "final_loss": logged[-1] if logged else None,
    }
    summary["weights_bytes"] = checkpoint_bytes(out_dir)  # every file of the checkpoint but recipe.json
    Path(out_dir, "recipe.json").write_text(json.dumps(dict(summary, log_history=info["log_history"]), indent=1) + "\n")
    summary["checkpoint_bytes"] = checkpoint_bytes(out_dir, without=())
    if results is not None:
        Path(results).parent.mkdir(parents=True, exist_ok=True)
        Path(results).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def accuracy_table(summary: dict) -> List[str]:
    """Markdown rows of the held-out accuracies (%), with each kind's majority-answer baseline."""
    h = summary["heldout"]
    rows = ["| Question kind | Held-out accuracy | Majority-answer baseline | Questions |", "|---|---|---|---|"]
    for kind, r in h["qa"].items():
        rows.append(f"| {kind} | {100 * r['accuracy']:.1f} | {100 * r['majority_baseline']:.1f} | {r['n']} |")
    c = h["caption"]
    rows.append(f"| caption (exact / fields right) | {100 * c['exact']:.1f} / {100 * c['partial']:.1f} | – | {c['n']} |")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(CHECKPOINT), help="checkpoint directory")
    p.add_argument("--results", default=str(RESULTS), help="results JSON ('' writes none)")
    p.add_argument("--data-dir", default=str(CACHE / "data"))
    p.add_argument("--steps", type=int, default=BaseRecipe.steps)
    p.add_argument("--train-videos", type=int, default=BaseRecipe.train_videos)
    p.add_argument("--eval-videos", type=int, default=BaseRecipe.eval_videos)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    recipe = BaseRecipe(steps=args.steps, train_videos=args.train_videos, eval_videos=args.eval_videos)
    summary = run(args.out, args.results or None, recipe, args.data_dir)
    print("\n".join(accuracy_table(summary)))
    print(f"train {summary['train_seconds']:.0f} s, checkpoint {summary['checkpoint_bytes'] / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
