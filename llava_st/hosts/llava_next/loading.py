"""Loading and converting checkpoints of the LLaVA-NeXT host.

* `load_st_model(path)`: an ST checkpoint (model_type "llava_st_qwen") for grounding.
* `from_plain_llava_video(path, ...)`: an ST model from a plain LLaVA-Video checkpoint: query tokens
  added, their embedding rows and the space decoder initialised, every other weight unchanged.
* `add_st_tokens(model, tokenizer)`: the query tokens on an already built model (training entry).
* An ST checkpoint saved with `save_st_model` into a directory whose name contains "llava" and "qwen"
  also loads for plain QA through upstream's `llava.model.builder.load_pretrained_model`.
"""

import logging
from pathlib import Path
from typing import Optional, Tuple

import torch
from transformers import AutoTokenizer

from ...core.config import STConfig
from ...core.tokens import add_query_tokens, init_query_embeddings
from ..checkpoint import TOKENIZER_FILES, CheckpointError, check_files, check_loading_info, check_weights, short
from .config import LlavaSTQwenConfig
from .modeling import LlavaSTQwenForCausalLM
from .register import register

logger = logging.getLogger(__name__)


def add_st_tokens(model: LlavaSTQwenForCausalLM, tokenizer) -> Tuple[int, ...]:
    """Add <r_0> ... <r_N> (N = config.st_num_queries) to `tokenizer`, give their embedding rows the
    mean of the vocabulary's rows (also under ZeRO-3) and record their ids in the config. Returns the ids.
    Idempotent: a second call leaves existing rows alone."""
    query = add_query_tokens(tokenizer, model.config.st_num_queries)
    if list(query.ids) != list(model.config.st_query_token_ids or []):
        init_query_embeddings(model, query)
        model.config.st_query_token_ids = list(query.ids)
    return query.ids


def load_st_model(path, device: str = "cpu", torch_dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa"):
    """Load an ST checkpoint. Returns (tokenizer, LlavaSTQwenForCausalLM in eval mode, image_processor).
    Weights load only from safetensors; a missing, truncated or foreign checkpoint (hosts.checkpoint
    checks) raises CheckpointError, one line."""
    register()
    path = str(path)
    check_weights(path)
    check_files(path, [TOKENIZER_FILES])
    try:
        config = LlavaSTQwenConfig.from_pretrained(path)
    except Exception as exc:  # transformers raises many kinds for a config it cannot use
        raise CheckpointError(f"{path}: cannot read config.json as a {LlavaSTQwenConfig.model_type} config: {short(exc)}") from exc
    if config.st_query_mode != "none" and config.st_query_token_ids is None:
        raise CheckpointError(f"{path} is not an ST checkpoint (config has no st_query_token_ids); use from_plain_llava_video")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load the tokenizer: {short(exc)}") from exc
    try:
        model, info = LlavaSTQwenForCausalLM.from_pretrained(
            path, config=config, torch_dtype=torch_dtype, attn_implementation=attn_implementation,
            use_safetensors=True, output_loading_info=True,
        )
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load the {LlavaSTQwenConfig.model_type} model: {short(exc)}") from exc
    check_loading_info(path, info)
    model.to(device).eval()
    return tokenizer, model, model.get_vision_tower().image_processor


def from_plain_llava_video(path, st: Optional[STConfig] = None, torch_dtype: torch.dtype = torch.float32,
                           attn_implementation: str = "sdpa"):
    """Build an ST model from a plain LLaVA-Video (model_type "llava_qwen") checkpoint.

    st: the SpaceVLLM options (default STConfig()). Returns (tokenizer with the query tokens, model).
    The space decoder is freshly initialised; the query rows are the mean of the vocabulary's rows.
    """
    register()
    path = str(path)
    st = st or STConfig()
    config = LlavaSTQwenConfig.from_pretrained(path, **st.to_dict())
    check_weights(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = LlavaSTQwenForCausalLM.from_pretrained(
        path, config=config, torch_dtype=torch_dtype, attn_implementation=attn_implementation, use_safetensors=True
    )
    if st.query_mode != "none":
        add_st_tokens(model, tokenizer)
    return tokenizer, model


def save_st_model(model: LlavaSTQwenForCausalLM, tokenizer, out_dir) -> Path:
    """Save model and tokenizer (safetensors). Keep "llava" and "qwen" in the directory name for upstream's
    load_pretrained_model; a name without them still loads with `load_st_model`."""
    out = Path(out_dir)
    name = out.name.lower()
    if "llava" not in name or "qwen" not in name:
        logger.warning("%s: upstream's load_pretrained_model needs 'llava' and 'qwen' in the directory name", out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out
