"""The LLaVA-NeXT host: SpaceVLLM inside unmodified upstream LLaVA-NeXT (package `llava`, @ df17966).

Importing this package imports upstream and registers `LlavaSTQwen` (so `--model_class_name LlavaSTQwen`
works in upstream's training command).
"""

from .config import LlavaSTQwenConfig
from .modeling import LlavaSTCausalLMOutput, LlavaSTQwenForCausalLM
from .register import MODEL_CLASS_NAME, register

register()

__all__ = ["LlavaSTQwenConfig", "LlavaSTQwenForCausalLM", "LlavaSTCausalLMOutput", "MODEL_CLASS_NAME", "register"]
