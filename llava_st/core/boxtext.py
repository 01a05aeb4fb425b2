"""Boxes as text: the answer format of the "boxes as text" ablation (paper Table 7, row 1), where the
model has no queries and no decoder and must write every box. One formatter and one parser.

Format: "From 1.0s to 2.0s. 1.0s: [0.12, 0.30, 0.45, 0.80]; 2.0s: [0.14, 0.30, 0.47, 0.81]."
Boxes are normalised xyxy in [0, 1] with two decimals; times are seconds.
"""

import re
from typing import Callable, Dict, Optional, Sequence, Tuple

from .timespan import format_span, parse_span

_FRAME = re.compile(r"(\d+(?:\.\d+)?)\s*s\s*:\s*\[\s*([^\]]*)\]")


def format_boxes_text(start: float, end: float, frames: Sequence[Tuple[float, Sequence[float]]]) -> str:
    """frames: [(t seconds, normalised xyxy box)] -> the ablation's answer text."""
    parts = [f"{t:.1f}s: [" + ", ".join(f"{v:.2f}" for v in box) + "]" for t, box in frames]
    text = format_span(start, end)
    return text + (" " + "; ".join(parts) + "." if parts else "")


def parse_boxes_text(text: str) -> Tuple[object, Dict[float, list]]:
    """-> (ParsedSpan, {t seconds: normalised xyxy}). Malformed boxes are skipped, never raised."""
    span = parse_span(text.split(";")[0] if text else text)
    boxes = {}
    for m in _FRAME.finditer(text or ""):
        try:
            values = [float(v) for v in m.group(2).split(",")]
        except ValueError:
            continue
        if len(values) == 4:
            boxes[float(m.group(1))] = [min(max(v, 0.0), 1.0) for v in values]
    return span, boxes


def answer_token_budget(count_tokens: Callable[[str], int], frame_times: Sequence[float], boxes_as_text: bool,
                        fixed_answer: Optional[str] = None, margin: int = 8) -> int:
    """The answer length limit (max_new_tokens) that no answer of the trained format can exceed, for a
    clip sampled at `frame_times` (seconds; [0.0] for an image).

    The longest trained answer is built with the training formatters: the span with the latest sampled
    time at both ends (format_span), and with `boxes_as_text` one box per sampled frame, every
    coordinate written with its four characters (format_boxes_text). `fixed_answer`: the answer text of
    a model with a decoder when it is not a span (REC). `count_tokens(text)` is the tokenizer's length
    of a text; `margin` tokens are added for the end of the answer.
    """
    if fixed_answer is not None and not boxes_as_text:
        return count_tokens(fixed_answer) + margin
    times = [float(t) for t in frame_times] or [0.0]
    last = max(times)
    frames = [(t, [0.99, 0.99, 0.99, 0.99]) for t in times] if boxes_as_text else []
    return count_tokens(format_boxes_text(last, last, frames)) + margin
