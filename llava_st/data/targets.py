"""Per-sampled-frame grounding targets from a Uni-STG record: the one mapping training, inference and
eval share.

A record's `boxes` are the annotated frames: a list of {"t": seconds, "xyxy": [x0, y0, x1, y1] pixels of
the original video or image}. `span` is [t_s, t_e] in seconds. The span is snapped to sampled-frame
times (paper §3.1.2); every sampled frame inside the snapped span takes the annotated box nearest in
time, if one lies within `max_gap` seconds.
"""

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ..core.boxes import ImageFrame, cxcywh_to_xyxy, normalize_xyxy, xyxy_to_cxcywh
from ..core.boxtext import format_boxes_text
from ..core.timespan import format_span, snap_span, span_frame_mask
from .templates import REC_ANSWER


@dataclass
class FrameTargets:
    """boxes_cxcywh: float32 [F, 4] normalised targets (0 where none); mask: bool [F], True where a frame
    is inside the snapped span and has a box; span: the snapped (start, end) in seconds, or None."""

    boxes_cxcywh: torch.Tensor
    mask: torch.Tensor
    span: Optional[tuple]


def annotation_gap(record: dict) -> float:
    """Largest time gap (seconds) to accept between a sampled frame and an annotated box: the record's
    annotation interval (1/fps), at least 0.5 s."""
    fps = record.get("fps") or 0
    return max(1.0 / fps if fps else 0.0, 0.5)


def frame_targets(record: dict, frame_times, max_gap: Optional[float] = None) -> FrameTargets:
    """Targets for the sampled frames at `frame_times` (seconds, [F]) of a grounding record."""
    times = np.asarray(frame_times, dtype=np.float64)
    F = times.shape[0]
    boxes = torch.zeros(F, 4)
    mask = torch.zeros(F, dtype=torch.bool)
    span = record.get("span")
    annotated = record.get("boxes") or []
    if span is None or not annotated:
        return FrameTargets(boxes, mask, None if span is None else snap_span(span[0], span[1], times))
    snapped = snap_span(float(span[0]), float(span[1]), times)
    inside = span_frame_mask(snapped[0], snapped[1], times)
    ann_t = np.array([b["t"] for b in annotated], dtype=np.float64)
    ann_xyxy = torch.tensor([b["xyxy"] for b in annotated], dtype=torch.float32)
    gap = annotation_gap(record) if max_gap is None else max_gap
    nearest = np.abs(times[:, None] - ann_t[None, :]).argmin(1)  # [F]
    close = np.abs(ann_t[nearest] - times) <= gap + 1e-6
    use = inside & close
    if use.any():
        rows = torch.from_numpy(nearest[use])
        norm = normalize_xyxy(ann_xyxy[rows], record["width"], record["height"])
        boxes[torch.from_numpy(use)] = xyxy_to_cxcywh(norm)
        mask[torch.from_numpy(use)] = True
    return FrameTargets(boxes, mask, snapped)


def image_targets(record: dict, image_aspect_ratio: str = "anyres") -> FrameTargets:
    """The single target of a REC record (its first box), as F = 1, normalised to the frame the model
    sees under upstream's `image_aspect_ratio` (core.boxes.ImageFrame: "pad" centres the image on a
    square; "anyres*" and a plain resize cover the frame with the whole image)."""
    annotated = record.get("boxes") or []
    if not annotated:
        return FrameTargets(torch.zeros(1, 4), torch.zeros(1, dtype=torch.bool), None)
    xyxy = torch.tensor([annotated[0]["xyxy"]], dtype=torch.float32)
    norm = ImageFrame.for_aspect_ratio(record["width"], record["height"], image_aspect_ratio).normalize(xyxy)
    return FrameTargets(xyxy_to_cxcywh(norm), torch.ones(1, dtype=torch.bool), None)


def boxes_answer(span, targets: FrameTargets, frame_times: Sequence[float]) -> str:
    """The boxes-as-text answer (query_mode "none"): the span and the normalised xyxy box of every
    sampled frame that has a target (times in seconds)."""
    xyxy = cxcywh_to_xyxy(targets.boxes_cxcywh)
    frames = [(float(frame_times[i]), xyxy[i].tolist()) for i in targets.mask.nonzero()[:, 0].tolist()]
    return format_boxes_text(span[0], span[1], frames)


def grounding_answer(task: str, targets: FrameTargets, frame_times: Sequence[float], boxes_as_text: bool = False) -> str:
    """The answer a grounding record trains on both hosts, for its targets on the sampled frames at
    `frame_times` (seconds): STVG and VTG the snapped span (core.timespan.format_span of targets.span),
    REC the fixed REC_ANSWER (the decoder gives the box). boxes_as_text (query mode "none"): STVG and REC
    carry the span and the normalised xyxy box of every sampled frame with a target (boxes_answer; REC
    as one frame at t = 0, span [0, 0])."""
    if boxes_as_text and task in ("stvg", "rec"):
        span, times = (targets.span, frame_times) if task == "stvg" else ((0.0, 0.0), [0.0])
        return boxes_answer(span, targets, times)
    if task == "rec":
        return REC_ANSWER
    if targets.span is None:
        raise ValueError(f"a {task} record needs a span")
    return format_span(*targets.span)
