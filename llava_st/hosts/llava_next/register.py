"""Registration, so that upstream finds the ST model the way it finds its own.

Upstream's `get_model` (llava/train/train.py @ df17966) resolves `--model_class_name X` as
`getattr(transformers, "XForCausalLM")`; Auto* classes resolve checkpoints by `model_type`.
"""

import transformers
from transformers import AutoConfig, AutoModelForCausalLM

from .config import LlavaSTQwenConfig
from .model import LlavaSTQwenForCausalLM

MODEL_CLASS_NAME = "LlavaSTQwen"


def register() -> None:
    """Register LlavaSTQwen with AutoConfig / AutoModelForCausalLM and on the transformers module
    (idempotent)."""
    AutoConfig.register(LlavaSTQwenConfig.model_type, LlavaSTQwenConfig, exist_ok=True)
    AutoModelForCausalLM.register(LlavaSTQwenConfig, LlavaSTQwenForCausalLM, exist_ok=True)
    setattr(transformers, MODEL_CLASS_NAME + "Config", LlavaSTQwenConfig)
    setattr(transformers, MODEL_CLASS_NAME + "ForCausalLM", LlavaSTQwenForCausalLM)
