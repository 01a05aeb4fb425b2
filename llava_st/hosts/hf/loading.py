"""Turn a plain LLaVA-OneVision model (+ tokenizer and image processor) into an ST model and processor,
and save/load ST checkpoints (safetensors, the transformers layout)."""

import logging
import os
from typing import Tuple

import torch
from transformers import LlavaOnevisionForConditionalGeneration, LlavaOnevisionImageProcessor, LlavaOnevisionVideoProcessor

from ...core.config import STConfig
from ...core.tokens import QueryTokens, add_query_tokens, init_query_embeddings
from .config import MODEL_TYPE, LlavaSTOnevisionConfig
from .modeling import LlavaSTOnevisionForConditionalGeneration
from .processor import IMAGE_TOKEN, VIDEO_TOKEN, LlavaSTProcessor

logger = logging.getLogger(__name__)


def add_visual_tokens(tokenizer) -> Tuple[int, int]:
    """Add <image> and <video> as special tokens when missing; return their ids (image, video)."""
    missing = [t for t in (IMAGE_TOKEN, VIDEO_TOKEN) if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    return tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)


def make_processor(tokenizer, vision_config, st: STConfig, image_processor=None) -> LlavaSTProcessor:
    """The ST processor for a SigLIP vision config (image_size, patch_size in pixels). The image
    processor defaults to LLaVA-OneVision's with grid pinpoints of 1x1 .. 3x3 tiles of the image size."""
    size = vision_config.image_size
    if image_processor is None:
        pinpoints = [[size * h, size * w] for h in (1, 2, 3) for w in (1, 2, 3)]
        image_processor = LlavaOnevisionImageProcessor(size={"height": size, "width": size}, image_grid_pinpoints=pinpoints)
    video_processor = LlavaOnevisionVideoProcessor(
        size={"height": size, "width": size},
        image_mean=image_processor.image_mean,
        image_std=image_processor.image_std,
    )
    return LlavaSTProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        num_image_tokens=(size // vision_config.patch_size) ** 2,
        num_queries=st.num_queries,
        query_mode=st.query_mode,
    )


def convert_base(base: LlavaOnevisionForConditionalGeneration, tokenizer, st: STConfig, image_processor=None, seed=None):
    """An ST model and processor from a plain LLaVA-OneVision model and its tokenizer (modified in place:
    <image>, <video>, <r_0> ... <r_N> are added). Every weight of `base` is kept; the query embeddings
    start at the mean of the vocabulary's rows; the decoder is new, initialised after torch.manual_seed(seed)
    when `seed` is given (reproducible), from torch's global generator otherwise. Returns (model, processor)."""
    image_id, video_id = add_visual_tokens(tokenizer)
    query = add_query_tokens(tokenizer, st.num_queries)
    kwargs = base.config.to_dict()
    for key in ("model_type", "architectures", "transformers_version", "_name_or_path"):
        kwargs.pop(key, None)
    kwargs.update(st.to_dict(), image_token_index=image_id, video_token_index=video_id, st_query_token_ids=list(query.ids))
    kwargs["vision_feature_select_strategy"] = "full"
    config = LlavaSTOnevisionConfig(**kwargs)
    if seed is not None:
        torch.manual_seed(seed)
    model = LlavaSTOnevisionForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    if unexpected or any(not k.startswith("space_decoder.") for k in missing):
        raise RuntimeError(f"weights do not match the base model: missing {missing}, unexpected {unexpected}")
    rows = max(max(query.ids), image_id, video_id) + 1
    if rows > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(rows)
    init_query_embeddings(model, QueryTokens(query.ids))
    model.config.text_config.vocab_size = model.get_input_embeddings().weight.shape[0]
    model.vocab_size = model.config.text_config.vocab_size
    return model, make_processor(tokenizer, config.vision_config, st, image_processor)


def save_st_model(model, processor, out_dir) -> str:
    """Write an ST checkpoint: config.json, model.safetensors, the processor and tokenizer."""
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return str(out_dir)


def is_st_checkpoint(path) -> bool:
    """True when `path` holds a config.json of this host's model_type."""
    import json

    cfg = os.path.join(str(path), "config.json")
    if not os.path.isfile(cfg):
        return False
    with open(cfg) as f:
        return json.load(f).get("model_type") == MODEL_TYPE


def load_st_model(path, device: str = "cpu", torch_dtype=None):
    """Load an ST checkpoint -> (tokenizer, model in eval mode, processor), the return shape of the
    LLaVA-NeXT host's load_st_model (there the third is upstream's image processor; here the
    LlavaSTProcessor, whose .tokenizer is the first). Weights load only from safetensors; a missing,
    truncated or foreign checkpoint (hosts.checkpoint checks) raises CheckpointError, one line."""
    from ..checkpoint import PREPROCESSOR_FILES, TOKENIZER_FILES, CheckpointError, check_files, check_loading_info, check_weights, short

    check_weights(path)
    check_files(path, [TOKENIZER_FILES, PREPROCESSOR_FILES])
    try:
        model, info = LlavaSTOnevisionForConditionalGeneration.from_pretrained(
            str(path), torch_dtype=torch_dtype, use_safetensors=True, output_loading_info=True
        )
    except Exception as exc:  # transformers raises many kinds for a config or weights it cannot use
        raise CheckpointError(f"{path}: cannot load the {MODEL_TYPE} model: {short(exc)}") from exc
    check_loading_info(path, info)
    try:
        processor = LlavaSTProcessor.from_pretrained(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load the tokenizer and processor: {short(exc)}") from exc
    if (processor.query_mode, processor.num_queries) != (model.config.st.query_mode, model.config.st.num_queries):
        raise ValueError(
            f"{path}: the processor lays out {processor.num_queries} queries in mode {processor.query_mode!r} but the "
            f"model expects {model.config.st.num_queries} in mode {model.config.st.query_mode!r}"
        )
    if processor.query_mode != "none" and processor.query_token_ids != model.config.st_query_token_ids:
        raise ValueError(f"{path}: the tokenizer's query token ids differ from config.st_query_token_ids")
    return processor.tokenizer, model.to(device).eval(), processor
