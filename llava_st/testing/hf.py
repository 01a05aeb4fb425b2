"""Tiny, offline LLaVA-OneVision models for the transformers host (tests, demo recipe, benchmarks).

Defaults: SigLIP hidden 32, 32 px images, patch 8 (a 4 x 4 patch grid, 4 pooled tokens per video frame),
Qwen2 hidden 64 with 2 layers over the given tokenizer.
"""

import copy
from pathlib import Path
from typing import Optional

from .tiny import tiny_qwen2_config, tiny_siglip_config


def tiny_onevision_config(tokenizer, image_size: int = 32, patch_size: int = 8, vision_hidden: int = 32, text_hidden: int = 64,
                          text_layers: int = 2):
    """A LlavaOnevisionConfig with a tiny SigLIP tower and a tiny Qwen2 over `tokenizer`'s vocabulary
    (rounded up to a multiple of 64 rows, like Qwen's spare rows)."""
    from transformers import LlavaOnevisionConfig

    vision = tiny_siglip_config(hidden_size=vision_hidden, image_size=image_size, patch_size=patch_size, layers=2, heads=2,
                                intermediate_size=2 * vision_hidden)
    vocab = ((len(tokenizer) + 63) // 64) * 64
    text = tiny_qwen2_config(vocab, hidden_size=text_hidden, layers=text_layers)
    text.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return LlavaOnevisionConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_token_index=vocab - 2,
        video_token_index=vocab - 1,
        image_grid_pinpoints=[[image_size * h, image_size * w] for h in (1, 2, 3) for w in (1, 2, 3)],
    )


def build_tiny_st(tokenizer, st=None, seed: int = 0, out_dir: Optional[str] = None, **config_kwargs):
    """A random tiny ST model and its processor (a copy of `tokenizer` gets the new tokens).

    st: core STConfig (default: 8 queries, the paper's layout). With `out_dir` the checkpoint is saved
    there, or loaded from there when it already exists. Returns (model, processor).
    """
    import torch
    from transformers import LlavaOnevisionForConditionalGeneration

    from ..core.config import STConfig
    from ..hosts.hf import convert_base, is_st_checkpoint, load_st, save_st

    if out_dir is not None and is_st_checkpoint(out_dir):
        return load_st(out_dir)
    st = st or STConfig(num_queries=8)
    torch.manual_seed(seed)
    base = LlavaOnevisionForConditionalGeneration(tiny_onevision_config(tokenizer, **config_kwargs))
    model, processor = convert_base(base, copy.deepcopy(tokenizer), st)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        save_st(model, processor, out_dir)
    return model.eval(), processor


def save_tiny_onevision(out_dir, tokenizer, seed: int = 0, **config_kwargs) -> str:
    """Save a random plain (non-ST) tiny LLaVA-OneVision model and `tokenizer` to `out_dir`: the kind of
    base checkpoint hosts.hf.train.train_hf converts. Returns the directory."""
    import torch
    from transformers import LlavaOnevisionForConditionalGeneration

    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(tiny_onevision_config(tokenizer, **config_kwargs))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return str(out_dir)
