"""Training through upstream LLaVA-NeXT's own `train()` (llava/train/train.py @ df17966).

`install()` changes upstream's train module in place, by name, and nothing else; `run(argv)` then calls
upstream `train()` unchanged, so its argument parsing, model loading, `mm_tunable_parts`, DeepSpeed
configs, trainer, checkpointing and saving are all upstream's:

- ModelArguments gain the st_* options of core.STConfig (number of queries, decoder options, loss
  weights); TrainingArguments gain `st_head_lr` (learning rate of the space decoder, default: the
  base rate).
- `make_supervised_data_module` builds dataset.GroundingDataset and dataset.GroundingCollator.
- `LLaVATrainer` becomes LlavaSTTrainer (below), which also repairs upstream bugs 1 and 2 and lets
  transformers 4.45 resume under torch >= 2.6 (its RNG files fail torch.load's weights_only default).
- `get_model` reads the checkpoint's config as a LlavaSTQwenConfig carrying the st_* options when
  `--model_class_name LlavaSTQwen` is given (a plain LLaVA-Video checkpoint is the usual start).
- `safe_save_model_for_hf_trainer` skips `torch.cuda.synchronize()` when there is no CUDA (bug 3).
"""

import contextlib
import dataclasses
import functools
import json
import logging
import os
import sys
from collections import Counter
from typing import List, Optional

import numpy as np
import torch
import transformers
from llava.train import train as upstream
from llava.train.llava_trainer import LLaVATrainer
from llava.train.train import DataCollatorForSupervisedDataset

from ...core.config import QUERY_MODES, STConfig
from ...core.decoder import QueryGuidedSpaceDecoder
from ..loss_terms import LossTermsLogging
from .config import LlavaSTQwenConfig
from .data import BOX_TASKS, GroundingDataset, make_data_module, summarize
from .loading import add_st_tokens
from .modeling import LlavaSTQwenForCausalLM
from .register import MODEL_CLASS_NAME, register

try:
    from numpy._core.multiarray import _reconstruct  # numpy >= 2
except ImportError:
    from numpy.core.multiarray import _reconstruct

logger = logging.getLogger(__name__)

BAD_SAMPLES_FILE = "bad_samples.jsonl"
BAD_SAMPLES_SUMMARY = "bad_samples_summary.json"
# What the numpy RNG state inside transformers' rng_state*.pth files is made of.
NUMPY_RNG_TYPES = [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
# An mm_tunable_parts entry of llava_st: train the space decoder even when the language model is frozen.
SPACE_DECODER_PART = "space_decoder"
# The unweighted loss terms of LlavaSTCausalLMOutput, logged beside `loss`.


def _st_argument_fields():
    """(name, type, field) of --st_<option> for every core.STConfig option, defaults included."""
    out = []
    for f in dataclasses.fields(STConfig):
        metadata = {"help": f"llava_st: STConfig.{f.name}"}
        if f.name == "query_mode":
            metadata["choices"] = QUERY_MODES
        out.append((f"st_{f.name}", f.type, dataclasses.field(default=f.default, metadata=metadata)))
    return out


ModelArguments = dataclasses.make_dataclass("ModelArguments", _st_argument_fields(), bases=(upstream.ModelArguments,))


@dataclasses.dataclass
class TrainingArguments(upstream.TrainingArguments):
    st_head_lr: Optional[float] = dataclasses.field(default=None, metadata={"help": "llava_st: learning rate of the space decoder"})


def decoder_parameters(model) -> List[torch.nn.Parameter]:
    """The parameters of every QueryGuidedSpaceDecoder inside `model` (the space head)."""
    return [p for m in model.modules() if isinstance(m, QueryGuidedSpaceDecoder) for p in m.parameters()]


class LlavaSTTrainer(LossTermsLogging, LLaVATrainer):
    """Upstream's LLaVATrainer with its two blocking bugs repaired, the query tokens added, the space
    decoder trainable (with `mm_language_model` or `space_decoder` in mm_tunable_parts) and optionally on
    its own learning rate, each loss term logged (the mean since the last log over steps and ranks, as
    `loss`: hosts.loss_terms), and a bad-sample summary at the end."""

    # Upstream bug 1 (df17966): LLaVATrainer._inner_training_loop uses names it never imports
    # (NameError: DebugOption); transformers' own loop is what it was copied from.
    _inner_training_loop = transformers.Trainer._inner_training_loop
    # Upstream bug 2: LLaVATrainer.create_accelerator_and_postprocess passes `dispatch_batches`, which
    # accelerate >= 1.0 rejects; transformers' own method builds the same accelerator.
    create_accelerator_and_postprocess = transformers.Trainer.create_accelerator_and_postprocess

    def __init__(self, model=None, args=None, **kwargs):
        if not isinstance(model, LlavaSTQwenForCausalLM) and isinstance(kwargs.get("train_dataset"), GroundingDataset):
            require_st_model(kwargs["train_dataset"])
            # Another model class trains upstream's way: upstream's collator, no grounding keys in the batch.
            kwargs["data_collator"] = DataCollatorForSupervisedDataset(tokenizer=kwargs["tokenizer"])
        if isinstance(model, LlavaSTQwenForCausalLM) and model.config.st.uses_decoder:
            trainable = [m.weight.requires_grad for m in (model.get_input_embeddings(), model.get_output_embeddings())]
            add_st_tokens(model, kwargs["tokenizer"])  # may resize: keep what mm_tunable_parts decided
            for m, grad in zip((model.get_input_embeddings(), model.get_output_embeddings()), trainable):
                m.weight.requires_grad_(grad)
        tunable = (getattr(model.config, "mm_tunable_parts", None) or "").split(",")
        if SPACE_DECODER_PART in tunable or "mm_language_model" in tunable:
            for p in decoder_parameters(model):
                p.requires_grad_(True)
        if args.deepspeed and args.bf16:
            cast_unpartitioned_to_bf16(model)
        super().__init__(model=model, args=args, **kwargs)
        self._head_group_done = False
        if isinstance(self.train_dataset, GroundingDataset):
            self.train_dataset.boxes_as_text = isinstance(model, LlavaSTQwenForCausalLM) and not model.config.st.uses_decoder
            self.train_dataset.bad.attach(os.path.join(args.output_dir, BAD_SAMPLES_FILE))

    def _load_rng_state(self, checkpoint):
        # transformers 4.45 reads its own RNG files with torch.load's default, weights_only=True since
        # torch 2.6, which rejects the numpy RNG state inside them (resuming fails); allow exactly that.
        with torch.serialization.safe_globals(NUMPY_RNG_TYPES):
            return super()._load_rng_state(checkpoint)

    def create_optimizer(self):
        optimizer = super().create_optimizer()
        if self.args.st_head_lr is None or self._head_group_done:
            return optimizer
        head = {id(p) for p in decoder_parameters(self.model)}
        moved_groups = []
        for group in optimizer.param_groups:
            moved = [p for p in group["params"] if id(p) in head]
            if moved:
                group["params"] = [p for p in group["params"] if id(p) not in head]
                moved_groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": moved, "lr": self.args.st_head_lr})
        for group in moved_groups:
            optimizer.add_param_group(group)
        self._head_group_done = True
        return optimizer

    def train(self, *args, **kwargs):
        result = super().train(*args, **kwargs)
        self.accelerator.wait_for_everyone()
        if self.is_world_process_zero() and isinstance(self.train_dataset, GroundingDataset):
            counts = summarize(os.path.join(self.args.output_dir, BAD_SAMPLES_FILE))
            summary = {"total": sum(counts.values()), "by_kind": dict(counts)}
            with open(os.path.join(self.args.output_dir, BAD_SAMPLES_SUMMARY), "w") as f:
                json.dump(summary, f, indent=1)
            logger.warning("bad samples replaced during training: %d %s (details: %s)", summary["total"], summary["by_kind"],
                           BAD_SAMPLES_FILE)
        return result


def require_st_model(dataset: GroundingDataset) -> None:
    """Stop (SystemExit, one line) when `dataset` holds records with boxes (STVG/REC), which only the
    llava_st model (`--model_class_name LlavaSTQwen`) trains; plain and VTG records train with any model."""
    tasks = Counter(r.get("task") for r in dataset.list_data_dict if isinstance(r, dict) and r.get("task") in BOX_TASKS)
    if tasks:
        found = ", ".join(f"{n} {task}" for task, n in sorted(tasks.items()))
        raise SystemExit(
            f"llava_st.train: the training data has records with boxes ({found}), which only the llava_st model trains: "
            f"add --model_class_name {MODEL_CLASS_NAME} to the command line"
        )


def cast_unpartitioned_to_bf16(model) -> None:
    """Cast fp32 parameters built outside `deepspeed.zero.Init` (upstream's mm_projector, modules added
    after loading) to bf16: deepspeed 0.19.8's stage-3 `defragment()` fails on mixed dtypes."""
    for p in model.parameters():
        if not hasattr(p, "ds_id") and p.dtype == torch.float32:
            p.data = p.data.to(torch.bfloat16)


@contextlib.contextmanager
def _without_cuda_synchronize():
    saved = torch.cuda.synchronize
    torch.cuda.synchronize = lambda device=None: None
    try:
        yield
    finally:
        torch.cuda.synchronize = saved


def _safe_save_model(original):
    @functools.wraps(original)
    def save(trainer, output_dir):
        # Upstream bug 3 (df17966): safe_save_model_for_hf_trainer calls torch.cuda.synchronize()
        # unconditionally, which fails without CUDA.
        with contextlib.nullcontext() if torch.cuda.is_available() else _without_cuda_synchronize():
            return original(trainer=trainer, output_dir=output_dir)

    return save


class _STConfigReader:
    """Stands in for `AutoConfig` inside upstream's get_model: reads the checkpoint's config as a
    LlavaSTQwenConfig with the st_* options of the command line."""

    def __init__(self, st: STConfig):
        self.st = st

    def from_pretrained(self, path, **kwargs):
        return LlavaSTQwenConfig.from_pretrained(path, **kwargs, **self.st.to_dict())


def _get_model(original):
    @functools.wraps(original)
    def get_model(model_args, training_args, bnb_model_from_pretrained_args):
        if model_args.model_class_name != MODEL_CLASS_NAME:
            return original(model_args, training_args, bnb_model_from_pretrained_args)
        # The new weights (space decoder, query rows) are initialised while the model loads, before
        # the Trainer seeds anything: seed them from --seed so that two runs start alike.
        transformers.set_seed(training_args.seed)
        upstream.AutoConfig = _STConfigReader(STConfig.from_object(model_args))
        try:
            return original(model_args, training_args, bnb_model_from_pretrained_args)
        finally:
            upstream.AutoConfig = transformers.AutoConfig

    return get_model


def install() -> None:
    """Prepare upstream's train module for llava_st: register the model, extend the arguments, swap in
    the data module and the trainer, repair the saving function. Only the first call changes anything."""
    if getattr(upstream, "_llava_st_installed", False):
        return
    register()
    upstream.ModelArguments = ModelArguments
    upstream.TrainingArguments = TrainingArguments
    upstream.make_supervised_data_module = make_data_module
    upstream.LLaVATrainer = LlavaSTTrainer
    upstream.safe_save_model_for_hf_trainer = _safe_save_model(upstream.safe_save_model_for_hf_trainer)
    upstream.get_model = _get_model(upstream.get_model)
    upstream._llava_st_installed = True


def run(argv: List[str]) -> None:
    """Run upstream `train()` on upstream's command line `argv` (without the program name)."""
    install()
    sys.argv = [sys.argv[0]] + list(argv)
    try:
        upstream.train()
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
