"""Filter (paper §3.2.1): keep clean per-frame boxes and emit the final Uni-STG stvg record.

1. A frame with more than `max_boxes` (3) detections is a complex scene: the frame is dropped.
2. Every remaining frame keeps only its most confident box (frames without a detection keep none).
3. Size stability: a sample is dropped when a kept box's area is below `min_ratio` (½) or above
   `max_ratio` (2×) the area of the box of the adjacent kept frame before it.
The output is an stvg record (convert.common.grounding_record: templated instruction, span answer)
with boxes [{"t": seconds, "xyxy": pixels}], `synthetic: true`; `source` and the Analyzer's `target` and
`objects` are kept.
"""

import random

from ..convert.common import BadEntry, clip_xyxy, grounding_record
from .stage import BadInput, Dropped

KEPT_FIELDS = ("source", "objects", "target")


def box_area(xyxy) -> float:
    """Area in square pixels of a pixel xyxy box (0 when degenerate)."""
    return max(xyxy[2] - xyxy[0], 0.0) * max(xyxy[3] - xyxy[1], 0.0)


class Filter:
    """Stage: refined record with `detections` -> final stvg record with `boxes`."""

    reads = ("detections", "width", "height")

    def __init__(self, max_boxes: int = 3, min_ratio: float = 0.5, max_ratio: float = 2.0, seed: int = 0):
        self.max_boxes, self.min_ratio, self.max_ratio = max_boxes, min_ratio, max_ratio
        self.seed = seed

    def __call__(self, record: dict) -> dict:
        width, height = record["width"], record["height"]
        boxes = []
        for det in record.get("detections", []):
            if not det["boxes"] or len(det["boxes"]) > self.max_boxes:
                continue
            best = max(range(len(det["boxes"])), key=lambda i: det["scores"][i])
            xyxy = clip_xyxy(det["boxes"][best], width, height)
            if xyxy is not None:
                boxes.append({"t": det["t"], "xyxy": xyxy})
        if not boxes:
            raise Dropped(f"every frame complex (> {self.max_boxes} boxes) or empty")
        for prev, cur in zip(boxes, boxes[1:]):
            ratio = box_area(cur["xyxy"]) / max(box_area(prev["xyxy"]), 1e-9)
            if ratio < self.min_ratio or ratio > self.max_ratio:
                raise Dropped("box area jumps between adjacent frames")
        extra = {k: record[k] for k in KEPT_FIELDS if k in record}
        rng = random.Random(f"{self.seed}:{record['id']}")
        try:
            return self._record(record, rng, boxes, width, height, extra)
        except BadEntry as e:  # a field of the input the final record cannot have (grounding_record checks it)
            raise BadInput(e.field, str(e)) from None

    @staticmethod
    def _record(record, rng, boxes, width, height, extra) -> dict:
        return grounding_record(
            record["id"],
            "stvg",
            record["video"],
            record["caption"],
            rng,
            span=record["span"],
            boxes=boxes,
            width=width,
            height=height,
            duration=record["duration"],
            fps=record["fps"],
            synthetic=True,
            **extra,
        )
