"""Metric math for STVG, VTG and REC (pure functions, vectorised over frames and queries).

The field's STVG evaluators disagree on two things, so both are explicit arguments here
(`STVGConvention`), with the published evaluators as named presets (see ../shared/DATA-NOTES.md):
- which frames count: every annotated frame at the dataset's fps, or frames resampled at `eval_fps`
  (TubeDETR: 5 fps, at most 200 per video);
- whether a span's end frame belongs to it (`end_inclusive`).

Per query, on the chosen frame grid (frame indices of the original video):
    tIoU  = |gt span ∩ pred span| / |gt span ∪ pred span|   (frame counts on the original frame indices)
    vIoU  = Σ_{grid frames in both spans} IoU(pred box, gt box) / |grid frames from min start to max end|
    gt_vIoU = Σ_{grid frames with a gt box} IoU(pred box or nothing, gt box) / |grid frames with a gt box|
m_tIoU, m_vIoU, gt_vIoU are means over queries; vIoU@R counts vIoU > R (strict). A query without a
prediction (unparsable answer) scores 0 on every metric and still counts in the denominator.

VTG: R@1 at IoU m counts IoU >= m, mIoU is the mean top-1 IoU (seconds, continuous). REC: Acc@0.5 counts
IoU >= 0.5 (pixel xyxy boxes, no +1 term). Boxes are pixel `xyxy` of the original frame everywhere here.
"""

import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch

from ..core.boxes import paired_box_iou, temporal_iou


@dataclass(frozen=True)
class STVGConvention:
    """How an STVG evaluator counts frames.

    frames: "annotated" (every frame of the original video at the dataset's fps) or "resampled" (frames
    taken every fps / eval_fps frames, then at most `max_frames` of them uniformly).
    end_inclusive: True when a span's end frame belongs to the span; False reproduces evaluators that
    build inclusive ground-truth bounds and then treat the end as exclusive.
    """

    name: str
    frames: str = "annotated"
    eval_fps: Optional[float] = None
    max_frames: Optional[int] = None
    end_inclusive: bool = True

    def __post_init__(self):
        if self.frames not in ("annotated", "resampled"):
            raise ValueError(f"frames must be 'annotated' or 'resampled', got {self.frames!r}")
        if self.frames == "resampled" and not (self.eval_fps and self.eval_fps > 0):
            raise ValueError(f"frames='resampled' needs eval_fps > 0, got {self.eval_fps!r}")

    def describe(self) -> str:
        frames = "every annotated frame" if self.frames == "annotated" else f"frames resampled at {self.eval_fps:g} fps"
        if self.max_frames:
            frames += f" (at most {self.max_frames})"
        return f"{self.name}: {frames}; span ends {'inclusive' if self.end_inclusive else 'exclusive'}"


# antoyang/TubeDETR datasets/{vidstg,hcstvg}_eval.py: 5 fps, cap 200; its exclusive `tube_end_frame` is one
# past the last ground-truth frame, i.e. the last frame counts (inclusive on last-frame indices).
TUBEDETR = STVGConvention("tubedetr", frames="resampled", eval_fps=5.0, max_frames=200, end_inclusive=True)
# tzhhhh123/HC-STVG eval_hcvg.py: every frame, inclusive, all_frame = max(end) - min(start) + 1.
HCSTVG_OFFICIAL = STVGConvention("hcstvg-official", frames="annotated", end_inclusive=True)
# jy0205/STCAT, HengLan/CGSTVG: every frame, inclusive bounds used as exclusive (last gt frame never counts).
STCAT = STVGConvention("stcat", frames="annotated", end_inclusive=False)
CONVENTIONS = {c.name: c for c in (TUBEDETR, HCSTVG_OFFICIAL, STCAT)}

STVG_THRESHOLDS = (0.3, 0.5)
VTG_THRESHOLDS = (0.3, 0.5, 0.7)


# ----------------------------------------------------------------------------------------------- STVG


def _in_span(frame_ids: np.ndarray, span, end_inclusive: bool) -> np.ndarray:
    if span is None:
        return np.zeros(frame_ids.shape, dtype=bool)
    start, end = span
    return (frame_ids >= start) & ((frame_ids <= end) if end_inclusive else (frame_ids < end))


def frame_span_tiou(gt_span, pred_span, end_inclusive: bool = True) -> float:
    """tIoU of two spans of frame indices (start, end); 0 when either is None or they do not overlap."""
    if gt_span is None or pred_span is None:
        return 0.0
    extra = 1 if end_inclusive else 0
    inter = min(gt_span[1], pred_span[1]) - max(gt_span[0], pred_span[0]) + extra
    if inter <= 0:
        return 0.0
    union = (gt_span[1] - gt_span[0] + extra) + (pred_span[1] - pred_span[0] + extra) - inter
    return float(inter / union) if union > 0 else 0.0


def stvg_query_scores(
    frame_ids: np.ndarray,
    gt_span,
    pred_span,
    gt_boxes: np.ndarray,
    pred_boxes: np.ndarray,
    end_inclusive: bool = True,
) -> Dict[str, float]:
    """tIoU, vIoU and gt_vIoU of one query (see the module docstring).

    frame_ids: int [N] the grid frames (indices of the original video). gt_span, pred_span: (start, end)
    frame indices, or None (no prediction). gt_boxes, pred_boxes: float [N, 4] pixel xyxy on the grid,
    NaN where there is no box.
    """
    frame_ids = np.asarray(frame_ids)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    has_gt = np.isfinite(gt_boxes).all(1)
    both = has_gt & np.isfinite(pred_boxes).all(1)
    iou = np.zeros(frame_ids.shape[0])
    if both.any():
        iou[both] = paired_box_iou(torch.from_numpy(pred_boxes[both]), torch.from_numpy(gt_boxes[both])).double().numpy()
    return _stvg_scores_from_iou(frame_ids, gt_span, pred_span, has_gt, iou, end_inclusive)


def _stvg_scores_from_iou(frame_ids, gt_span, pred_span, has_gt, iou, end_inclusive: bool) -> Dict[str, float]:
    """The metrics of one query from its per-grid-frame box IoU [N] (0 where a box is missing)."""
    in_gt = _in_span(frame_ids, gt_span, end_inclusive)
    gt_frames = in_gt & has_gt
    gt_viou = float(iou[gt_frames].sum() / max(int(gt_frames.sum()), 1))
    if pred_span is None:
        return {"tiou": 0.0, "viou": 0.0, "gt_viou": gt_viou}
    in_pred = _in_span(frame_ids, pred_span, end_inclusive)
    hull = (min(gt_span[0], pred_span[0]), max(gt_span[1], pred_span[1]))
    union = int(_in_span(frame_ids, hull, end_inclusive).sum())
    viou = float(iou[in_gt & in_pred].sum() / max(union, 1))
    return {"tiou": frame_span_tiou(gt_span, pred_span, end_inclusive), "viou": viou, "gt_viou": gt_viou}


def grid_frame_ids(total_frames: int, fps: float, convention: STVGConvention) -> np.ndarray:
    """int [N] frame indices of a `total_frames`-frame video at `fps` that the convention evaluates."""
    if convention.frames == "annotated":
        ids = np.arange(total_frames, dtype=np.int64)
    else:
        step = fps / convention.eval_fps
        ids = np.unique(np.floor(np.arange(0, total_frames / step) * step).astype(np.int64))
        ids = ids[ids < total_frames]
    if convention.max_frames and ids.shape[0] > convention.max_frames:
        ids = ids[np.linspace(0, ids.shape[0] - 1, convention.max_frames).astype(np.int64)]
    return ids


def seconds_to_frame_span(span, fps: float):
    """(start, end) seconds -> (start, end) frame indices (nearest frame); None stays None."""
    if span is None:
        return None
    return (int(round(float(span[0]) * fps)), int(round(float(span[1]) * fps)))


def boxes_on_grid(times: Sequence[float], boxes_xyxy, grid_times: np.ndarray, span=None, interpolate: bool = True) -> np.ndarray:
    """Place boxes given at `times` (seconds) onto `grid_times` (seconds, [N]) -> float [N, 4], NaN elsewhere.

    With `interpolate`, grid frames inside `span` (seconds, inclusive; default the range of `times`) take
    the box linearly interpolated in time (held constant beyond the first/last given time); without it,
    only grid frames within half a grid step of a given time take that box (ground-truth annotations).
    """
    out = np.full((len(grid_times), 4), np.nan)
    times = np.asarray(times, dtype=np.float64)
    if times.size == 0:
        return out
    order = np.argsort(times, kind="stable")
    times = times[order]
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)[order]
    grid_times = np.asarray(grid_times, dtype=np.float64)
    if interpolate:
        lo, hi = (times[0], times[-1]) if span is None else (float(span[0]), float(span[1]))
        inside = (grid_times >= lo - 1e-6) & (grid_times <= hi + 1e-6)
        for k in range(4):
            out[inside, k] = np.interp(grid_times[inside], times, boxes[:, k])
        return out
    # nearest given time of every grid time (ties to the earlier one), by binary search
    right = np.clip(np.searchsorted(times, grid_times), 1, max(times.size - 1, 1))
    left = right - 1
    if times.size == 1:
        nearest = np.zeros(grid_times.shape, dtype=np.int64)
    else:
        nearest = np.where(np.abs(grid_times - times[left]) <= np.abs(times[right] - grid_times), left, right)
    step = np.median(np.diff(grid_times)) if grid_times.size > 1 else 1.0
    close = np.abs(times[nearest] - grid_times) <= step / 2 + 1e-6
    out[close] = boxes[nearest[close]]
    return out


@dataclass
class _STVGQuery:
    """One query on its frame grid: ids int [N]; gt/pred float [N, 4] pixel xyxy (NaN: no box);
    gt_span/pred_span (first, last) frame indices or None."""

    ids: np.ndarray
    gt_boxes: np.ndarray
    pred_boxes: np.ndarray
    gt_span: tuple
    pred_span: Optional[tuple]


def _stvg_query(record: dict, tube: Optional[dict], convention: STVGConvention, grids: dict) -> _STVGQuery:
    fps = float(record["fps"])
    total = int(round(float(record["duration"]) * fps))
    key = (total, fps)
    if key not in grids:
        grids[key] = grid_frame_ids(total, fps, convention)
    ids = grids[key]
    grid_t = ids / fps
    gt = record["boxes"]
    gt_t = np.fromiter((b["t"] for b in gt), dtype=np.float64, count=len(gt))
    gt_boxes = boxes_on_grid(gt_t, [b["xyxy"] for b in gt], grid_t, interpolate=False)
    pred_span = seconds_to_frame_span(None if tube is None else tube.get("span"), fps)
    if pred_span is None:
        pred_boxes = np.full_like(gt_boxes, np.nan)
    else:
        # Boxes fill the grid frames of the frame-rounded span, the same frames its tIoU counts.
        frames = tube.get("frames") or []
        span_t = (pred_span[0] / fps, pred_span[1] / fps)
        pred_t = np.fromiter((f["t"] for f in frames), dtype=np.float64, count=len(frames))
        pred_boxes = boxes_on_grid(pred_t, [f["box_xyxy"] for f in frames], grid_t, span=span_t)
    return _STVGQuery(ids, gt_boxes, pred_boxes, _gt_frame_span(record, fps, gt_t), pred_span)


def score_stvg_many(pairs: Iterable, convention: STVGConvention = HCSTVG_OFFICIAL) -> List[Dict[str, float]]:
    """score_stvg over many (record, tube) pairs at once: the box IoUs of every query's frames are
    computed in one vectorised pass. Returns one score dict per pair, in order."""
    grids: dict = {}
    queries = [_stvg_query(record, tube, convention, grids) for record, tube in pairs]
    both = [np.isfinite(q.gt_boxes).all(1) & np.isfinite(q.pred_boxes).all(1) for q in queries]
    if not queries:
        return []
    pred = np.concatenate([q.pred_boxes[m] for q, m in zip(queries, both)])
    gt = np.concatenate([q.gt_boxes[m] for q, m in zip(queries, both)])
    flat = paired_box_iou(torch.from_numpy(pred), torch.from_numpy(gt)).double().numpy() if len(pred) else np.zeros(0)
    bounds = np.cumsum([0] + [int(m.sum()) for m in both])
    scores = []
    for n, (q, m) in enumerate(zip(queries, both)):
        iou = np.zeros(q.ids.shape[0])
        iou[m] = flat[bounds[n] : bounds[n + 1]]
        scores.append(_stvg_scores_from_iou(q.ids, q.gt_span, q.pred_span, np.isfinite(q.gt_boxes).all(1), iou, convention.end_inclusive))
    return scores


def score_stvg(record: dict, tube: Optional[dict], convention: STVGConvention = HCSTVG_OFFICIAL) -> Dict[str, float]:
    """Score one Uni-STG STVG record against a predicted tube (core.tube contract) under `convention`.

    record: "span" seconds, "boxes" [{"t" seconds, "xyxy" pixels}], "fps", "duration" (seconds); the
    ground-truth frames are those of its boxes (gt_frame_span).
    tube: {"span": seconds or None, "frames": [{"t", "box_xyxy"}]}; None or a span of None = no prediction.
    """
    return score_stvg_many([(record, tube)], convention)[0]


def _gt_frame_span(record: dict, fps: float, gt_t: np.ndarray):
    if gt_t.size == 0:
        return seconds_to_frame_span(record["span"], fps)
    frames = np.rint(gt_t * fps)
    return (int(frames.min()), int(frames.max()))


def gt_frame_span(record: dict, fps: float):
    """Ground-truth (first, last) frame indices: those of the first and last annotated box, as the field's
    evaluators take them (TubeDETR's tube frames, HC-STVG's st_frame + box count), so that converters
    writing the span end as the last frame's time or as the end of its interval agree; from `span`
    (seconds) when the record has no boxes."""
    boxes = record.get("boxes") or []
    return _gt_frame_span(record, fps, np.array([float(b["t"]) for b in boxes], dtype=np.float64))


def summarize_stvg(scores: Iterable[Dict[str, float]], thresholds: Sequence[float] = STVG_THRESHOLDS) -> Dict[str, float]:
    """Means over queries: m_tIoU, m_vIoU, vIoU@R (strict >), gt_vIoU, and n. NaN (not a crash) when empty."""
    scores = list(scores)
    tiou = np.array([s["tiou"] for s in scores], dtype=np.float64)
    viou = np.array([s["viou"] for s in scores], dtype=np.float64)
    gt_viou = np.array([s["gt_viou"] for s in scores], dtype=np.float64)
    out = {"m_tIoU": _mean(tiou), "m_vIoU": _mean(viou)}
    for r in thresholds:
        out[f"vIoU@{r:g}"] = _mean(viou > r) if viou.size else math.nan
    out["gt_vIoU"] = _mean(gt_viou)
    out["n"] = len(scores)
    return out


# ------------------------------------------------------------------------------------------------ VTG


def _spans_array(spans) -> np.ndarray:
    """list of (start, end) or None -> float [Q, 2] with NaN rows for None."""
    return np.array([[math.nan, math.nan] if s is None else [float(s[0]), float(s[1])] for s in spans], dtype=np.float64).reshape(-1, 2)


def vtg_ious(pred_spans, gt_spans) -> np.ndarray:
    """float [Q] top-1 IoU of predicted and ground-truth spans (seconds); a None prediction scores 0."""
    pred = _spans_array(pred_spans)
    gt = _spans_array(gt_spans)
    missing = ~np.isfinite(pred).all(1)
    pred[missing] = 0.0
    iou = temporal_iou(torch.from_numpy(pred), torch.from_numpy(gt)).numpy()
    iou[missing] = 0.0
    return iou


def summarize_vtg(ious, thresholds: Sequence[float] = VTG_THRESHOLDS) -> Dict[str, float]:
    """R@1 at IoU m (>=) for m in thresholds, mIoU and n, from per-query top-1 IoUs [Q]."""
    ious = np.asarray(ious, dtype=np.float64)
    out = {f"R@1,IoU={m:g}": _mean(ious >= m - 1e-12) if ious.size else math.nan for m in thresholds}
    out["mIoU"] = _mean(ious)
    out["n"] = int(ious.size)
    return out


def didemo_chunks(span, chunk_seconds: float = 5.0, num_chunks: int = 6):
    """(start, end) seconds -> inclusive chunk indices (s, e) of DiDeMo's 5-second segments; None stays None."""
    if span is None:
        return None
    s = int(min(max(math.floor(float(span[0]) / chunk_seconds + 1e-9), 0), num_chunks - 1))
    e = int(min(max(math.ceil(float(span[1]) / chunk_seconds - 1e-9) - 1, s), num_chunks - 1))
    return (s, e)


def didemo_scores(pred_chunks, annotator_chunks: List[Sequence]) -> Dict[str, float]:
    """DiDeMo (LisaAnne/LocalizingMoments utils/eval.py) with one prediction per query.

    pred_chunks: [Q] inclusive chunk spans (s, e) or None. annotator_chunks: [Q] lists of annotators'
    inclusive chunk spans. IoU = (min end + 1 - max start) / (max end + 1 - min start); per query the
    best 3 annotators' IoUs are averaged; R@1 counts queries whose prediction equals an annotator's span
    (the mean of the best 3 ranks is <= 1 only then).
    """
    r1, miou = [], []
    for pred, annotators in zip(pred_chunks, annotator_chunks):
        if pred is None:
            r1.append(0.0)
            miou.append(0.0)
            continue
        gt = np.asarray(annotators, dtype=np.float64).reshape(-1, 2)
        inter = np.clip(np.minimum(gt[:, 1], pred[1]) + 1 - np.maximum(gt[:, 0], pred[0]), 0, None)
        union = np.maximum(gt[:, 1], pred[1]) + 1 - np.minimum(gt[:, 0], pred[0])
        miou.append(float(np.sort(inter / union)[-3:].mean()))
        r1.append(float(any(tuple(map(int, g)) == tuple(pred) for g in gt)))
    return {"R@1": _mean(np.array(r1)), "mIoU": _mean(np.array(miou)), "n": len(r1)}


# ------------------------------------------------------------------------------------------------ REC


def rec_ious(pred_boxes, gt_boxes) -> np.ndarray:
    """float [Q] IoU of predicted and ground-truth pixel xyxy boxes; a None prediction scores 0."""
    pred = np.array([[math.nan] * 4 if b is None else list(map(float, b)) for b in pred_boxes], dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    missing = ~np.isfinite(pred).all(1)
    pred[missing] = 0.0
    iou = paired_box_iou(torch.from_numpy(pred), torch.from_numpy(gt)).double().numpy()
    iou[missing] = 0.0
    return iou


def summarize_rec(ious, threshold: float = 0.5) -> Dict[str, float]:
    """Acc@threshold (IoU >= threshold), mean IoU and n from per-query IoUs [Q]."""
    ious = np.asarray(ious, dtype=np.float64)
    return {f"Acc@{threshold:g}": _mean(ious >= threshold) if ious.size else math.nan, "mIoU": _mean(ious), "n": int(ious.size)}


def _mean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if values.size else math.nan
