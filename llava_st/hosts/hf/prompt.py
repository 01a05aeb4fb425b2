"""Prompt segments of the transformers host, in Qwen's chat format (LLaVA-Video's `qwen_1_5` template).

A grounding prompt is  prefix (system, user header, visual block, time instruction)  +  suffix (the
instruction with the description, assistant header)  +  answer. The prefix does not depend on the
description, so one KV cache of it serves several descriptions (api / grounder).
"""

from typing import List, Sequence

from ...core.timespan import time_instruction
from .processor import ImageSegment, Segment, VideoSegment

SYSTEM_USER = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
END_TURN = "<|im_end|>"


def video_prefix(num_frames: int, duration: float, frame_times: Sequence[float]) -> List[Segment]:
    """System + user header + the video block + upstream's time instruction (seconds)."""
    return [SYSTEM_USER, VideoSegment(num_frames), "\n" + time_instruction(duration, frame_times) + "\n"]


def image_prefix(height: int, width: int) -> List[Segment]:
    """System + user header + the image block (original size in pixels)."""
    return [SYSTEM_USER, ImageSegment(height, width), "\n"]


def question_suffix(question: str, first_turn: bool = True) -> List[Segment]:
    """The user's text and the assistant header; later turns open a new user turn first."""
    head = "" if first_turn else "\n<|im_start|>user\n"
    return [head + question + END_TURN + "\n<|im_start|>assistant\n"]


def answer_segment(answer: str) -> List[Segment]:
    """The assistant's answer, closed by <|im_end|> (the generation's stop token)."""
    return [answer + END_TURN]
