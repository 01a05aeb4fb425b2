"""Tiny upstream LLaVA-NeXT models (LlavaQwen / LlavaSTQwen) built offline, with LLaVA-Video's settings.

A tiny random Qwen2 (hidden 64, 2 layers) + the tiny SigLIP tower of the fake hub cache
(`build_tiny_siglip_hub`, hidden 1152, 384 px, patch 14 -> 729 patches) + upstream's `mlp2x_gelu`
projector, configured like LLaVA-Video-7B-Qwen2: `spatial_unpad`, `anyres_max_9`, newline per grid row,
bilinear 2x2 pooling (14 x 14 = 196 tokens + 14 newlines per frame). Importing this module imports
upstream `llava`.
"""

from pathlib import Path

import torch

# A few of LLaVA-Video's (384 x k) grid pinpoints: enough for 1x1, 1x2, 2x1 and 2x2 image grids.
TINY_GRID_PINPOINTS = [[384, 384], [384, 768], [768, 384], [768, 768]]


def llava_video_settings(siglip_repo: str, **overrides) -> dict:
    """The multimodal config attributes of LLaVA-Video-7B-Qwen2 (upstream scripts/video/train), for a
    tower given by its hub repo id. `overrides` replace any of them (e.g. mm_newline_position="frame")."""
    settings = dict(
        mm_vision_tower=siglip_repo,
        mm_projector_type="mlp2x_gelu",
        mm_hidden_size=1152,
        mm_vision_select_layer=-2,
        mm_vision_select_feature="patch",
        mm_patch_merge_type="spatial_unpad",
        mm_newline_position="grid",
        mm_spatial_pool_mode="bilinear",
        mm_spatial_pool_stride=2,
        image_aspect_ratio="anyres_max_9",
        image_grid_pinpoints=TINY_GRID_PINPOINTS,
        add_faster_video=False,
        mm_use_im_start_end=False,
        mm_use_im_patch_token=False,
        use_mm_proj=True,
        tokenizer_padding_side="right",
        tokenizer_model_max_length=32768,
    )
    settings.update(overrides)
    return settings


def tiny_llava_qwen_config(tokenizer, siglip_repo: str, config_class=None, hidden_size: int = 64, **overrides):
    """An upstream `LlavaQwenConfig` (or `config_class`, e.g. LlavaSTQwenConfig) for a tiny Qwen2 whose
    vocabulary covers `tokenizer` (rounded up to a multiple of 64). `overrides` go to the config."""
    from llava.model.language_model.llava_qwen import LlavaQwenConfig

    from .tiny import tiny_qwen2_config

    vocab = ((len(tokenizer) + 63) // 64) * 64
    base = tiny_qwen2_config(vocab, hidden_size=hidden_size).to_dict()
    for key in ("model_type", "transformers_version", "architectures"):
        base.pop(key, None)
    base.update(llava_video_settings(siglip_repo))
    base.update(overrides)
    base["bos_token_id"] = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    base["eos_token_id"] = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return (config_class or LlavaQwenConfig)(**base)


def init_tiny_llava(model, seed: int = 0):
    """Give upstream's uninitialised `image_newline` (torch.empty) a seeded value; return the model."""
    generator = torch.Generator().manual_seed(seed)
    newline = model.get_model().image_newline
    with torch.no_grad():
        newline.copy_(torch.randn(newline.shape, generator=generator) / newline.shape[0] ** 0.5)
    return model


def build_tiny_llava_qwen(out_dir, tokenizer, siglip_repo: str, seed: int = 0, **overrides) -> Path:
    """Save a random tiny upstream `LlavaQwenForCausalLM` and its tokenizer to `out_dir` (idempotent).

    The directory name should contain "llava" and "qwen" and no "yi" (upstream picks classes by path
    substrings). Needs HF_HUB_OFFLINE=1 and HF_HUB_CACHE pointing at the cache holding `siglip_repo`.
    """
    from llava.model.language_model.llava_qwen import LlavaQwenForCausalLM

    out = Path(out_dir)
    if (out / "config.json").is_file():
        return out
    config = tiny_llava_qwen_config(tokenizer, siglip_repo, **overrides)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = init_tiny_llava(LlavaQwenForCausalLM(config), seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out


def tiny_llava_st_qwen(tokenizer, siglip_repo: str, num_queries: int = 8, seed: int = 0, **overrides):
    """A random tiny `LlavaSTQwenForCausalLM` in memory, with LLaVA-Video's settings and the query tokens
    added to a copy of `tokenizer`. `overrides` go to the config (st_* options or upstream settings).
    Returns (tokenizer copy, model in eval mode, float32)."""
    import copy

    from ..hosts.llava_next import LlavaSTQwenConfig, LlavaSTQwenForCausalLM
    from ..hosts.llava_next.loading import add_st_tokens

    tokenizer = copy.deepcopy(tokenizer)
    config = tiny_llava_qwen_config(tokenizer, siglip_repo, config_class=LlavaSTQwenConfig, st_num_queries=num_queries, **overrides)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = init_tiny_llava(LlavaSTQwenForCausalLM(config), seed)
    if model.config.st_query_mode != "none":
        add_st_tokens(model, tokenizer)
    return tokenizer, model.eval()
