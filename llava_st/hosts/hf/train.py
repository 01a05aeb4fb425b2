"""Training the transformers host with the transformers Trainer.

`train_hf` is the one entry point (the demo recipe and the learning check call it): it takes an ST
checkpoint (to continue) or a plain LLaVA-OneVision checkpoint (converted with the ablation options of
`st`), Uni-STG records, and trains with the text loss and the space loss of eq. 5-6, logging both.
"""

import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch
from transformers import Trainer, TrainingArguments

from ...core.config import STConfig
from ...data.bad_samples import BAD_SAMPLES_FILE, write_summary
from ..loss_terms import LossTermsLogging
from .data import STCollator, STDataset
from .loading import convert_base, is_st_checkpoint, load_st_model
from .modeling import LlavaSTOnevisionForConditionalGeneration

logger = logging.getLogger(__name__)

class STTrainer(LossTermsLogging, Trainer):
    """Trainer that also logs each loss term (loss_text, loss_l1, loss_giou: the mean since the last log,
    hosts.loss_terms), next to the total `loss`."""


@dataclass
class TrainResult:
    """model (eval mode), processor, log_history (the Trainer's: dicts with step, loss, loss_text,
    loss_l1, loss_giou, learning_rate), output_dir (where the checkpoint was saved, or None)."""

    model: LlavaSTOnevisionForConditionalGeneration
    processor: object
    log_history: List[dict] = field(default_factory=list)
    output_dir: Optional[str] = None


def load_for_training(model_path, st: Optional[STConfig] = None):
    """(model, processor) from an ST checkpoint, or from a plain LLaVA-OneVision checkpoint (with its
    tokenizer) converted with `st` (default STConfig()). Options given for an ST checkpoint must match
    its own."""
    if is_st_checkpoint(model_path):
        _, model, processor = load_st_model(model_path)
        if st is not None and st != model.config.st:
            raise ValueError(f"{model_path} was built with {model.config.st}, not {st}; convert a base model instead")
        return model, processor
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    base = LlavaOnevisionForConditionalGeneration.from_pretrained(str(model_path), use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    return convert_base(base, tokenizer, st or STConfig())


def train_hf(
    model,
    records: Sequence[dict],
    data_root,
    output_dir: Optional[str] = None,
    *,
    processor=None,
    st: Optional[STConfig] = None,
    frames: int = 8,
    force_sample: bool = True,
    max_steps: int = 100,
    batch_size: int = 1,
    learning_rate: float = 1e-4,
    seed: int = 0,
    freeze_vision: bool = False,
    logging_steps: int = 1,
    logits_at_labels_only: bool = True,
    **training_args,
) -> TrainResult:
    """Train an ST model on Uni-STG records.

    model: a checkpoint path (see load_for_training; `st` holds the ablation options: query_mode
        interleave/after/none, dual_cross_attention, decoder_projections, decoder_residual,
        num_queries, loss weights) or an ST model object together with `processor`.
    records / data_root: Uni-STG records and the directory their media paths are relative to.
    frames / force_sample: frames sampled per video (every video of a batch must give the same number;
        force_sample makes that so). freeze_vision: keep the SigLIP tower fixed.
    logits_at_labels_only: apply the LM head only at the answer tokens (the same loss, a fraction of
        the time and memory: a step of the demo recipe takes half the time on the CPU).
    output_dir: where the final checkpoint (safetensors + processor) is written; None saves nothing.
    training_args: passed to transformers.TrainingArguments (e.g. lr_scheduler_type, warmup_steps,
        weight_decay, gradient_accumulation_steps, bf16).
    """
    if isinstance(model, (str, os.PathLike)):
        model, processor = load_for_training(model, st)
    elif processor is None:
        raise ValueError("pass the processor together with a model object")
    model.train()
    if freeze_vision:
        model.vision_tower.requires_grad_(False)
    dataset = STDataset(records, data_root, processor, frames=frames, force_sample=force_sample, seed=seed)
    if output_dir is not None:  # the LLaVA-NeXT host's files: bad_samples.jsonl, then bad_samples_summary.json
        dataset.bad.attach(os.path.join(str(output_dir), BAD_SAMPLES_FILE))
    collator = STCollator(processor.tokenizer.pad_token_id)
    with tempfile.TemporaryDirectory(prefix="llava-st-train-") as scratch:  # Trainer's output_dir when none is given
        args = TrainingArguments(
            output_dir=str(output_dir or scratch),
            max_steps=max_steps,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            logging_steps=logging_steps,
            save_strategy="no",
            report_to="none",
            remove_unused_columns=False,
            seed=seed,
            data_seed=seed,
            dataloader_num_workers=training_args.pop("dataloader_num_workers", 0),
            use_cpu=training_args.pop("use_cpu", not torch.cuda.is_available()),
            **training_args,
        )
        trainer = STTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
        model.logits_at_labels_only = logits_at_labels_only
        try:
            trainer.train()
        finally:
            model.logits_at_labels_only = False
    if output_dir is not None:
        summary = write_summary(str(output_dir))
        if summary["total"]:
            logger.warning("bad samples dropped or replaced: %d %s (details: %s)", summary["total"], summary["by_kind"], BAD_SAMPLES_FILE)
        trainer.save_model(str(output_dir))
        processor.save_pretrained(str(output_dir))
        logger.info("saved the ST checkpoint to %s", output_dir)
    return TrainResult(model.eval(), processor, list(trainer.state.log_history), None if output_dir is None else str(output_dir))
