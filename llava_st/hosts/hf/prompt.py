"""The prompt (core.prompt) as segments of the transformers host's processor: the visual block is a
VideoSegment / ImageSegment, everything else text."""

from typing import List, Sequence

from ...core.prompt import answer_text, prefix_parts, suffix_text
from ...core.timespan import time_instruction
from .processor import ImageSegment, Segment, VideoSegment


def video_prefix(num_frames: int, duration: float, frame_times: Sequence[float]) -> List[Segment]:
    """System + user header + the video block + upstream's time instruction (seconds)."""
    return prefix_parts(VideoSegment(num_frames), time_instruction(duration, frame_times))


def image_prefix(height: int, width: int) -> List[Segment]:
    """System + user header + the image block (original size in pixels)."""
    return prefix_parts(ImageSegment(height, width))


def question_suffix(question: str, first_turn: bool = True) -> List[Segment]:
    """The user's text and the assistant header (core.prompt.suffix_text)."""
    return [suffix_text(question, first_turn)]


def answer_segment(answer: str) -> List[Segment]:
    """The assistant's answer, closed by <|im_end|>."""
    return [answer_text(answer)]
