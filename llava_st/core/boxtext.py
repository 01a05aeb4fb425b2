"""Boxes as text: the answer format of the "boxes as text" ablation (paper Table 7, row 1), where the
model has no queries and no decoder and must write every box. One formatter and one parser.

Format: "From 1.0s to 2.0s. 1.0s: [0.12, 0.30, 0.45, 0.80]; 2.0s: [0.14, 0.30, 0.47, 0.81]."
Boxes are normalised xyxy in [0, 1] with two decimals; times are seconds.
"""

import re
from typing import Dict, Sequence, Tuple

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
