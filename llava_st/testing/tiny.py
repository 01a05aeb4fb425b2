"""Test-only videos, and the tiny offline builders re-exported from recipes.tiny_model (where production
code takes them from: nothing outside tests imports llava_st.testing)."""

from typing import Optional, Sequence

import numpy as np

from ..data.video import write_video
from ..recipes.tiny_model import (  # noqa: F401  (re-exported for the tests)
    QWEN_SPECIAL_TOKENS,
    TINY_SIGLIP_REPO,
    build_qwen_tokenizer,
    build_tiny_qwen2,
    build_tiny_siglip_hub,
    qwen_bpe_ranks_path,
    tiny_qwen2_config,
    tiny_siglip_config,
)


def write_moving_box_video(path, num_frames: int = 40, fps: float = 10.0, width: int = 96, height: int = 64,
                           span: Optional[Sequence[int]] = None, color=(230, 40, 40), box_size=(24, 20), seed: int = 0):
    """An mp4 with a coloured rectangle moving left to right over a grey noisy background.

    span: (first, last) frame indices (inclusive) where the rectangle is visible; default all frames.
    Returns (path, boxes) where boxes is float [num_frames, 4] pixel xyxy, NaN outside the span.
    """
    rng = np.random.default_rng(seed)
    first, last = span if span is not None else (0, num_frames - 1)
    bw, bh = box_size
    frames = np.full((num_frames, height, width, 3), 110, dtype=np.uint8)
    frames = np.clip(frames + rng.integers(-8, 9, size=frames.shape), 0, 255).astype(np.uint8)
    boxes = np.full((num_frames, 4), np.nan, dtype=np.float64)
    for t in range(first, last + 1):
        frac = (t - first) / max(last - first, 1)
        x0 = int(round(frac * (width - bw)))
        y0 = (height - bh) // 2
        frames[t, y0 : y0 + bh, x0 : x0 + bw] = color
        boxes[t] = [x0, y0, x0 + bw, y0 + bh]
    write_video(path, frames, fps)
    return str(path), boxes
