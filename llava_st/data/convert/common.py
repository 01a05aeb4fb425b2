"""Building blocks every converter shares: the record builder, box and time helpers, drop counting.

Converters yield Uni-STG records (llava_st.data.schema): times in seconds, boxes pixel xyxy of the
original frame. Instructions come from data.templates (a template drawn per record by a seeded rng);
STVG/VTG answers are core.timespan.format_span of the span, REC answers data.templates.REC_ANSWER.
"""

import logging
import random
from collections import Counter
from typing import Iterable, List, Optional, Sequence

from tqdm import tqdm

from ...core.timespan import format_span
from ..templates import REC_ANSWER, instruction

logger = logging.getLogger(__name__)


class Drops(Counter):
    """Counts of source items a converter skipped, by reason; `note` also logs the first few."""

    def note(self, reason: str, item_id) -> None:
        self[reason] += 1
        if self[reason] <= 3:
            logger.warning("skipped %s: %s", item_id, reason)


def conversations(task: str, caption: str, rng: random.Random, span: Optional[Sequence[float]] = None) -> List[dict]:
    """The two LLaVA turns of a grounding record: a templated instruction after `<image>\\n`, and the answer
    (the span template for stvg/vtg, REC_ANSWER for rec)."""
    answer = REC_ANSWER if task == "rec" else format_span(float(span[0]), float(span[1]))
    return [
        {"from": "human", "value": "<image>\n" + instruction(task, caption, rng)},
        {"from": "gpt", "value": answer},
    ]


def grounding_record(
    record_id: str,
    task: str,
    media: str,
    caption: str,
    rng: random.Random,
    span: Optional[Sequence[float]] = None,
    boxes: Optional[List[dict]] = None,
    width: Optional[float] = None,
    height: Optional[float] = None,
    duration: Optional[float] = None,
    fps: Optional[float] = None,
    **extra,
) -> dict:
    """One Uni-STG grounding record. `media` is the video (stvg, vtg) or image (rec) path relative to the
    data root; `span` (seconds) and `boxes` ([{"t": seconds, "xyxy": pixels}]) as in the schema; `extra`
    keys are copied (e.g. `clip`, `source`, `sentence_type`)."""
    caption = " ".join(caption.split())
    record = {"id": record_id, "task": task, ("image" if task == "rec" else "video"): media}
    record["conversations"] = conversations(task, caption, rng, span)
    record["caption"] = caption
    if span is not None:
        record["span"] = [round(float(span[0]), 4), round(float(span[1]), 4)]
    if boxes is not None:
        record["boxes"] = boxes
    for key, value in (("width", width), ("height", height), ("duration", duration), ("fps", fps)):
        if value is not None:
            record[key] = round(float(value), 4) if isinstance(value, float) else value
    record.update(extra)
    return record


def xywh_to_xyxy_clipped(xywh: Sequence[float], width: float, height: float) -> Optional[List[float]]:
    """Pixel xywh -> pixel xyxy clipped to a width x height frame; None when nothing of it is left."""
    x, y, w, h = (float(v) for v in xywh)
    return clip_xyxy([x, y, x + w, y + h], width, height)


def clip_xyxy(xyxy: Sequence[float], width: float, height: float) -> Optional[List[float]]:
    """Pixel xyxy clipped to a width x height frame, rounded to 0.01 px; None when of zero area after it."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    if x1 <= x0 or y1 <= y0:
        return None
    return [round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)]


def frame_time(frame_index: int, fps: float) -> float:
    """Seconds of a 0-based frame index at `fps` (rounded to 0.1 ms)."""
    return round(frame_index / fps, 4)


def clip_span(start: float, end: float, duration: Optional[float]) -> Optional[tuple]:
    """(start, end) seconds clipped to [0, duration]; None when empty afterwards (start >= end)."""
    start = max(float(start), 0.0)
    end = float(end) if duration is None else min(float(end), float(duration))
    return (start, end) if start < end else None


def iter_progress(items: Iterable, desc: str, total: Optional[int] = None):
    """A tqdm progress bar over `items` (converters call it on their source items)."""
    return tqdm(items, desc=desc, total=total, unit="item")
