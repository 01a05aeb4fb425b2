"""The transformers host: SpaceVLLM behind transformers' LlavaOnevisionForConditionalGeneration.

Importing this package registers the config and model with transformers' Auto classes under the model
type "llava_st_onevision".
"""

from transformers import AutoConfig, AutoModelForVision2Seq

from .config import MODEL_TYPE, LlavaSTOnevisionConfig
from .loading import convert_base, is_st_checkpoint, load_st_model, make_processor, save_st_model
from .modeling import LlavaSTCausalLMOutput, LlavaSTOnevisionForConditionalGeneration
from .processor import ImageSegment, LlavaSTProcessor, VideoSegment

AutoConfig.register(MODEL_TYPE, LlavaSTOnevisionConfig, exist_ok=True)
AutoModelForVision2Seq.register(LlavaSTOnevisionConfig, LlavaSTOnevisionForConditionalGeneration, exist_ok=True)

__all__ = [
    "MODEL_TYPE",
    "LlavaSTOnevisionConfig",
    "LlavaSTOnevisionForConditionalGeneration",
    "LlavaSTCausalLMOutput",
    "LlavaSTProcessor",
    "VideoSegment",
    "ImageSegment",
    "convert_base",
    "make_processor",
    "save_st_model",
    "load_st_model",
    "is_st_checkpoint",
]
