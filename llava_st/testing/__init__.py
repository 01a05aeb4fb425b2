"""Offline builders of tiny models, tokenizers and videos for tests, the demo recipe and benchmarks.

Nothing here downloads: the tokenizer's BPE ranks come from a file inside an installed PyPI package, the
models are random with tiny configs, videos are drawn with numpy and written with opencv.
"""

from .tiny import (
    QWEN_SPECIAL_TOKENS,
    build_qwen_tokenizer,
    build_tiny_qwen2,
    build_tiny_siglip_hub,
    tiny_qwen2_config,
    tiny_siglip_config,
    write_moving_box_video,
    write_video,
)

__all__ = [
    "QWEN_SPECIAL_TOKENS",
    "build_qwen_tokenizer",
    "build_tiny_qwen2",
    "build_tiny_siglip_hub",
    "tiny_qwen2_config",
    "tiny_siglip_config",
    "write_moving_box_video",
    "write_video",
]
