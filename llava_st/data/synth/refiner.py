"""Refiner (paper §3.2.1): move the span to where the target is actually detected.

The new span runs from the first to the last annotated frame with at least one detection (times in
seconds); detections outside it are removed. Spans shorter than `min_seconds` (2 s) or longer than
`max_seconds` (120 s) are dropped, as are records with no detection at all.
"""

from .stage import Dropped


class Refiner:
    """Stage: record with `detections` -> record with the refined `span` (seconds)."""

    reads = ("detections",)

    def __init__(self, min_seconds: float = 2.0, max_seconds: float = 120.0):
        self.min_seconds, self.max_seconds = min_seconds, max_seconds

    def __call__(self, record: dict) -> dict:
        hits = [d["t"] for d in record.get("detections", []) if d["boxes"]]
        if not hits:
            raise Dropped("target never detected")
        start, end = min(hits), max(hits)
        if end - start < self.min_seconds:
            raise Dropped(f"refined span shorter than {self.min_seconds:g} s")
        if end - start > self.max_seconds:
            raise Dropped(f"refined span longer than {self.max_seconds:g} s")
        detections = [d for d in record["detections"] if start <= d["t"] <= end]
        return {**record, "span": [start, end], "detections": detections, "span_before_refine": record.get("span")}
