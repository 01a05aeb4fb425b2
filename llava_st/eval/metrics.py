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
Most of the cost of scoring is turning records' ground-truth box dicts into arrays: `prepare_stvg_gt`
does it once per test set, and `score_stvg_many` takes its results in place of the records.

VTG: R@1 at IoU m counts IoU >= m, mIoU is the mean top-1 IoU (seconds, continuous). REC: Acc@0.5 counts
IoU >= 0.5 (pixel xyxy boxes, no +1 term). Boxes are pixel `xyxy` of the original frame everywhere here.
"""

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

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
    nearest, dist = _nearest_time(times, np.array([0, times.size]), grid_times, np.array([0, grid_times.size]))
    close = dist <= _half_step(grid_times)
    out[close] = boxes[nearest[close]]
    return out


def _nearest_time(times: np.ndarray, bounds: np.ndarray, query_times: np.ndarray, query_bounds: np.ndarray):
    """Nearest given time to each query time, segment by segment, ties to the earlier one (binary search).

    times float [T] seconds, sorted within segments: segment i is times[bounds[i]:bounds[i + 1]] (not
    empty); its query times (seconds) are query_times[query_bounds[i]:query_bounds[i + 1]].
    Returns (index into times int [N], distance float [N] seconds).
    """
    segments = zip(bounds[:-1].tolist(), bounds[1:].tolist(), query_bounds[:-1].tolist(), query_bounds[1:].tolist())
    local = [np.searchsorted(times[t0:t1], query_times[q0:q1]) for t0, t1, q0, q1 in segments]
    local = np.concatenate(local + [np.zeros(0, dtype=np.int64)])
    sizes = np.diff(query_bounds)
    start, count = np.repeat(bounds[:-1], sizes), np.repeat(np.diff(bounds), sizes)
    left = start + np.clip(local, 1, np.maximum(count - 1, 1)) - 1
    right = np.minimum(left + 1, times.size - 1)  # a segment of one time always takes it (left)
    take_right = (count > 1) & ~(np.abs(query_times - times[left]) <= np.abs(times[right] - query_times))
    nearest = np.where(take_right, right, left)
    return nearest, np.abs(times[nearest] - query_times)


def _finite_rows(boxes: np.ndarray) -> np.ndarray:
    """bool [N]: rows of boxes [N, 4] with four finite numbers (np.isfinite(boxes).all(1), faster)."""
    finite = np.isfinite(boxes)
    return finite[:, 0] & finite[:, 1] & finite[:, 2] & finite[:, 3]


def _half_step(grid_times: np.ndarray) -> float:
    """How close (seconds) a ground-truth box's time must be to a grid time to count on that frame."""
    step = np.median(np.diff(grid_times)) if grid_times.size > 1 else 1.0
    return step / 2 + 1e-6


def _ranges(starts, lengths) -> np.ndarray:
    """int [sum(lengths)]: starts[0], starts[0] + 1, ... (lengths[0] of them), then starts[1], ..."""
    starts, lengths = np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    return np.arange(ends[-1] if ends.size else 0) + np.repeat(starts - (ends - lengths), lengths)


def _timed_boxes(lists: List[list], key: str):
    """Several lists of timed boxes [{"t": seconds, key: [x1, y1, x2, y2] pixels}], end to end.

    Returns (times float [P] seconds, sorted within each list (stable, as boxes_on_grid sorts),
    boxes float [P, 4], bounds int [len(lists) + 1]: list i is [bounds[i], bounds[i + 1])).
    """
    bounds = np.cumsum([0] + [len(items) for items in lists])
    items = list(chain.from_iterable(lists))
    times = np.fromiter(map(itemgetter("t"), items), dtype=np.float64, count=len(items))
    boxes = np.fromiter(chain.from_iterable(map(itemgetter(key), items)), dtype=np.float64)
    if boxes.size != 4 * len(items):
        raise ValueError(f"every {key} needs 4 numbers")
    boxes = boxes.reshape(-1, 4)
    drops = np.flatnonzero(~(times[1:] >= times[:-1])) + 1  # times[i] < times[i - 1], or NaN
    drops = drops[~np.isin(drops, bounds)]  # inside a list, not where the next one starts
    for i in np.unique(np.searchsorted(bounds, drops, side="right") - 1):
        part = slice(bounds[i], bounds[i + 1])
        order = np.argsort(times[part], kind="stable")
        times[part], boxes[part] = times[part][order], boxes[part][order]
    return times, boxes, bounds


@dataclass(frozen=True, eq=False)
class STVGGroundTruth:
    """One STVG record's ground truth as arrays, for any convention (made by `prepare_stvg_gt`).

    fps; total: frames in the video (duration x fps, rounded); span: (first, last) frame indices
    (gt_frame_span). For the video frames first_frame, first_frame + 1, ... (the span within [0, total)):
    boxes float [M, 4] pixel xyxy of the annotated box nearest in time; dist float [M] seconds from the
    frame's time to that box's time, inf where that box is not finite or the record has no boxes (its
    boxes are then meaningless). A grid frame has a ground-truth box when dist <= half the grid step
    + 1e-6, as boxes_on_grid places them.
    """

    fps: float
    total: int
    span: Optional[tuple]
    first_frame: int
    boxes: np.ndarray
    dist: np.ndarray


def prepare_stvg_gt(records: Iterable[dict], batch: int = 1024) -> List[STVGGroundTruth]:
    """Uni-STG STVG records -> their ground truth as arrays (one per record, in order). Converting the box
    dicts is most of the work of scoring, so an eval run does it once per test set and passes the results
    to score_stvg_many in place of the records, for every group and convention it scores."""
    records = list(records)
    return [gt for i in range(0, len(records), batch) for gt in _prepare_batch(records[i : i + batch])]


def _prepare_batch(records: List[dict]) -> List[STVGGroundTruth]:
    """prepare_stvg_gt of a few records at once: their boxes and frames end to end (P boxes, F frames)."""
    fps = [float(r["fps"]) for r in records]
    totals = [int(round(float(r["duration"]) * f)) for r, f in zip(records, fps)]
    times, boxes, bounds = _timed_boxes([r["boxes"] for r in records], "xyxy")  # [P], [P, 4], [R + 1]
    counts = np.diff(bounds)
    has = counts > 0
    # gt_frame_span: the frames of the first and last box (times are sorted), else those of the span.
    edge_times = times[np.stack([bounds[:-1], bounds[1:] - 1], axis=1)[has]]  # [records with boxes, 2]
    edges = iter(np.rint(edge_times * np.array(fps)[has, None]).tolist())
    spans = [tuple(map(int, next(edges))) if n else seconds_to_frame_span(r["span"], f) for r, f, n in zip(records, fps, counts.tolist())]
    # The frames of each span within the video, end to end, and the nearest box of each.
    first = [0 if s is None else max(s[0], 0) for s in spans]
    sizes = np.array([0 if s is None else max(min(s[1], t - 1) + 1 - f, 0) for s, t, f in zip(spans, totals, first)], dtype=np.int64)
    frame_times = _ranges(first, sizes) / np.repeat(fps, sizes)  # [F] seconds
    nearest, dist = np.zeros(frame_times.size, dtype=np.int64), np.full(frame_times.size, np.inf)
    with_boxes = np.repeat(has, sizes)
    if with_boxes.any():
        frame_bounds = np.cumsum(np.r_[0, sizes[has]])
        nearest[with_boxes], dist[with_boxes] = _nearest_time(times, np.unique(bounds), frame_times[with_boxes], frame_bounds)
    frame_boxes = boxes[nearest] if boxes.size else np.full((frame_times.size, 4), np.nan)
    dist[~_finite_rows(frame_boxes)] = np.inf
    rows = np.cumsum(np.r_[0, sizes]).tolist()
    return [
        STVGGroundTruth(f, t, s, f0, frame_boxes[r0:r1], dist[r0:r1])
        for f, t, s, f0, r0, r1 in zip(fps, totals, spans, first, rows[:-1], rows[1:])
    ]


@dataclass
class _Grid:
    """A convention's grid for one video length and fps: ids int [N] ascending frame indices, times float
    [N] seconds (ids / fps), both also as lists (for bisect), half_step seconds (_half_step)."""

    ids: np.ndarray
    times: np.ndarray
    id_list: list
    time_list: list
    half_step: float

    @classmethod
    def build(cls, total: int, fps: float, convention: STVGConvention) -> "_Grid":
        ids = grid_frame_ids(total, fps, convention)
        times = ids / fps
        return cls(ids, times, ids.tolist(), times.tolist(), _half_step(times))

    def positions(self, start: int, stop: int) -> Tuple[int, int]:
        """Positions [a, b) on the grid of its frames start <= frame < stop."""
        a = bisect_left(self.id_list, start)
        return a, max(a, bisect_left(self.id_list, stop))


@dataclass
class _Query:
    """One query on its grid, by positions [start, stop) of grid frames: `window` those inside the
    ground-truth span (the only frames any of its sums runs over), `boxed` those of the window where the tube
    has a box (inside its frame-rounded span, in seconds +-1e-6), `in_pred` those of the window inside the
    predicted span; `hull`: how many grid frames lie from the earlier start to the later end."""

    grid: _Grid
    gt: STVGGroundTruth
    tube: Optional[dict]
    pred_span: Optional[tuple]  # (first, last) frame indices; None = no prediction
    window: Tuple[int, int]
    boxed: Tuple[int, int]
    in_pred: Tuple[int, int]
    hull: int

    @classmethod
    def build(cls, gt: STVGGroundTruth, tube: Optional[dict], grid: _Grid, end_inclusive: bool) -> "_Query":
        extra = 1 if end_inclusive else 0
        a, b = (0, 0) if gt.span is None else grid.positions(gt.span[0], gt.span[1] + extra)
        pred_span = seconds_to_frame_span(None if tube is None else tube.get("span"), gt.fps)
        if pred_span is None:
            return cls(grid, gt, tube, None, (a, b), (a, a), (a, a), 0)

        def within(start, stop):
            start = min(max(a, start), b)
            return start, max(start, min(b, stop))

        # Tube boxes fill the grid frames of the frame-rounded span, the same frames its tIoU counts.
        lo, hi = pred_span[0] / gt.fps - 1e-6, pred_span[1] / gt.fps + 1e-6
        boxed = within(bisect_left(grid.time_list, lo), bisect_right(grid.time_list, hi)) if tube.get("frames") else (a, a)
        hull = grid.positions(min(gt.span[0], pred_span[0]), max(gt.span[1], pred_span[1]) + extra)
        in_pred = within(*grid.positions(pred_span[0], pred_span[1] + extra))
        return cls(grid, gt, tube, pred_span, (a, b), boxed, in_pred, hull[1] - hull[0])


def _window_ious(queries: List[_Query]):
    """The box IoU on every window frame of every query, windows end to end (L frames in all).

    Returns iou float [L] (0 where the tube or the ground truth has no box), has_gt bool [L], and
    starts int [Q]: query q's window is [starts[q], starts[q] + its size).
    """
    sizes = np.array([q.window[1] - q.window[0] for q in queries], dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    # Ground truth: each window frame's row in the queries' prepared arrays, end to end.
    frames = np.concatenate([q.grid.ids[q.window[0] : q.window[1]] for q in queries])
    first_rows = np.cumsum([0] + [q.gt.dist.size for q in queries])[:-1] - np.array([q.gt.first_frame for q in queries], dtype=np.int64)
    half_steps = np.repeat(np.array([q.grid.half_step for q in queries], dtype=np.float64), sizes)
    has_gt = np.concatenate([q.gt.dist for q in queries])[frames + np.repeat(first_rows, sizes)] <= half_steps
    # Tubes: boxes interpolated on their boxed frames (coordinates first: pred float [4, K]), and the
    # ground-truth boxes there (gt float [K, 4]).
    boxed = [(q, start) for q, start in zip(queries, starts.tolist()) if q.boxed[1] > q.boxed[0]]
    lengths = [q.boxed[1] - q.boxed[0] for q, _ in boxed]
    times, boxes, bounds = _timed_boxes([q.tube["frames"] for q, _ in boxed], "box_xyxy")
    pred, gt = np.empty((4, sum(lengths))), np.empty((sum(lengths), 4))
    k = 0
    for (q, _), n, t0, t1 in zip(boxed, lengths, bounds[:-1].tolist(), bounds[1:].tolist()):
        on_grid = slice(*q.boxed)
        for c in range(4):
            pred[c, k : k + n] = np.interp(q.grid.times[on_grid], times[t0:t1], boxes[t0:t1, c])
        gt[k : k + n] = q.gt.boxes[q.grid.ids[on_grid] - q.gt.first_frame]
        k += n
    at = _ranges([start + q.boxed[0] - q.window[0] for q, start in boxed], lengths)  # their window positions
    both = has_gt[at] & np.isfinite(pred).all(0)
    iou = np.zeros(frames.size)
    if both.any():
        iou[at[both]] = paired_box_iou(torch.from_numpy(pred[:, both].T), torch.from_numpy(gt[both])).double().numpy()
    return iou, has_gt, starts


def _score_queries(queries: List[_Query], end_inclusive: bool) -> List[Dict[str, float]]:
    """tIoU, vIoU, gt_vIoU of each query (as _stvg_scores_from_iou, on its window frames only)."""
    iou, has_gt, starts = _window_ious(queries)
    gt_iou = iou[has_gt]
    gt_before = np.r_[0, np.cumsum(has_gt)]  # ground-truth frames before each window position
    ends = starts + np.array([q.window[1] - q.window[0] for q in queries], dtype=np.int64)
    scores = []
    for q, start, g0, g1 in zip(queries, starts.tolist(), gt_before[starts].tolist(), gt_before[ends].tolist()):
        gt_viou = float(gt_iou[g0:g1].sum() / max(g1 - g0, 1))
        if q.pred_span is None:
            scores.append({"tiou": 0.0, "viou": 0.0, "gt_viou": gt_viou})
            continue
        both = iou[start + q.in_pred[0] - q.window[0] : start + q.in_pred[1] - q.window[0]]
        viou = float(both.sum() / max(q.hull, 1))
        scores.append({"tiou": frame_span_tiou(q.gt.span, q.pred_span, end_inclusive), "viou": viou, "gt_viou": gt_viou})
    return scores


def score_stvg_many(pairs: Iterable, convention: STVGConvention = HCSTVG_OFFICIAL, batch: int = 1024) -> List[Dict[str, float]]:
    """score_stvg over many (record, tube) pairs at once; returns one score dict per pair, in order. A
    record may be given as its STVGGroundTruth (prepare_stvg_gt), converted once for several calls.

    Only grid frames inside a query's ground-truth span enter its sums, so those of `batch` queries are
    laid end to end and their box IoUs computed in one vectorised pass; each sum then runs over the same
    frames in the same order as stvg_query_scores's, so the scores are the same to the last bit.
    """
    pairs = list(pairs)
    prepared = iter(prepare_stvg_gt([gt for gt, _ in pairs if not isinstance(gt, STVGGroundTruth)]))
    grids: Dict[tuple, _Grid] = {}
    queries = []
    for gt, tube in pairs:
        gt = gt if isinstance(gt, STVGGroundTruth) else next(prepared)
        if (gt.total, gt.fps) not in grids:
            grids[gt.total, gt.fps] = _Grid.build(gt.total, gt.fps, convention)
        queries.append(_Query.build(gt, tube, grids[gt.total, gt.fps], convention.end_inclusive))
    return [s for i in range(0, len(queries), batch) for s in _score_queries(queries[i : i + batch], convention.end_inclusive)]


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
