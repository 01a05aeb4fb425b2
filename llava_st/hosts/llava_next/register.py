"""Registration, so that upstream finds the ST model the way it finds its own.

Upstream's `get_model` (llava/train/train.py @ df17966) resolves `--model_class_name X` as
`getattr(transformers, "XForCausalLM")`; Auto* classes resolve checkpoints by `model_type`.

transformers 4.45 re-creates its module object the first time `transformers.processing_utils` is
imported (`direct_transformers_import` re-executes `transformers/__init__.py` into sys.modules), which
drops attributes set on the old object. `register` therefore triggers that import first and sets the
class on every `transformers` module object in use: sys.modules', this module's and upstream train's.
"""

import importlib
import sys

import transformers
from transformers import AutoConfig, AutoModelForCausalLM

from ...train import MODEL_CLASS_NAME
from .config import LlavaSTQwenConfig
from .modeling import LlavaSTQwenForCausalLM


def _transformers_modules():
    importlib.import_module("transformers.processing_utils")  # see the module docstring

    modules = [transformers, sys.modules["transformers"]]
    upstream_train = sys.modules.get("llava.train.train")
    if upstream_train is not None:
        modules.append(upstream_train.transformers)
    return {id(m): m for m in modules}.values()


def register() -> None:
    """Register LlavaSTQwen with AutoConfig / AutoModelForCausalLM and on the transformers module
    (idempotent)."""
    AutoConfig.register(LlavaSTQwenConfig.model_type, LlavaSTQwenConfig, exist_ok=True)
    AutoModelForCausalLM.register(LlavaSTQwenConfig, LlavaSTQwenForCausalLM, exist_ok=True)
    for module in _transformers_modules():
        setattr(module, MODEL_CLASS_NAME + "Config", LlavaSTQwenConfig)
        setattr(module, MODEL_CLASS_NAME + "ForCausalLM", LlavaSTQwenForCausalLM)
