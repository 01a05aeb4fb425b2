"""Metric math for STVG, VTG and REC (pure functions, vectorised over frames and queries).

STVG. Spans enter as frames under the time contract (core.timespan): a ground-truth tube is the frames
of its first and last box, a predicted one `span_to_frames` of its span (clipped to the video's frames;
a reversed span is read swapped), both (first, last) inclusive. The field's published evaluators then
differ in three things, each a field of `STVGConvention`, and each preset reproduces one of them exactly:

- `hcstvg-official`: tzhhhh123/HC-STVG `eval_hcvg.py` (hcvg_eval). Every frame; all_frame = max(last)
  - min(first) + 1; vIoU = sum of box IoUs on ground-truth frames where the tube has a box / all_frame;
  tIoU = number of those frames / all_frame (so a span without boxes has tIoU 0).
- `tubedetr`: antoyang/TubeDETR `datasets/hcstvg_eval.py` and `datasets/vidstg_eval.py`
  (HCSTVGGiouEvaluator / VidSTGiouEvaluator). Frames from the segment's start (a record's `clip`; the
  whole video but its last frame when there is none, as for HC-STVG), the first frame of each new
  5-fps bin, then at most 200 of them; spans [first, last + 1) (its post-processor adds 1 to the
  predicted end); tIoU of the two frame intervals; vIoU over the sampled frames of the union.
- `stcat`: jy0205/STCAT `datasets/evaluation/hcstvg_eval.py` with `models/post_processor.py`. Every
  frame; the prediction is [first, last + 1), the ground truth's inclusive [first, last] is used as
  end-exclusive, so its last frame never counts in tIoU or vIoU (it does in gt_vIoU). A tube equal to
  its ground truth of n frames therefore scores tIoU and vIoU (n - 1) / n under `stcat`, as STCAT's
  evaluator gives.

Per query, with G the ground-truth frames and P the predicted ones as the preset reads them:
    tIoU    = |G ∩ P| / |G ∪ P|   (frame intervals; `hcstvg-official`: see above)
    vIoU    = sum over evaluated frames in G ∩ P with a ground-truth box of IoU(pred box, gt box)
              / evaluated frames from the earlier start to the later end
    gt_vIoU = sum over evaluated frames of the ground truth with a box of IoU(tube box or nothing, gt box)
              / their number (TubeDETR and STCAT also report it; their models put a box on every frame,
              a tube has boxes only inside its span, so frames outside it count 0 here)
m_tIoU, m_vIoU, gt_vIoU are means over queries; vIoU@R counts vIoU > R (strict). A query without a
prediction (unparsable answer) scores 0 on every metric and still counts in the denominator. A tube's
box at time t is the box of frame round(t * fps), and its box on a frame is linearly interpolated between
those (held beyond the first and last, inside its span); a ground-truth frame has a box when an
annotated box lies within half a frame step of it. Two zero-area boxes have IoU 0 here (TubeDETR's
np_box_iou gives NaN, which makes its means NaN); ground-truth frames outside the video are not evaluated
(the published evaluators assume there are none).
Most of the cost of scoring is turning records' ground-truth box dicts into arrays: `prepare_stvg_gt`
does it once per test set, and `score_stvg_many` takes its results in place of the records.

VTG: R@1 at IoU m counts IoU >= m, mIoU is the mean top-1 IoU (seconds, continuous), as jayleicn/moment_detr
`standalone_eval/eval.py` (compute_temporal_iou_batch_paired). DiDeMo: LisaAnne/LocalizingMoments
`utils/eval.py` (see didemo_scores). REC: Acc@0.5 counts IoU >= 0.5 (pixel xyxy boxes, no +1 term).
Boxes are pixel `xyxy` of the original frame everywhere here.
"""

import math
from bisect import bisect_left
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..core.boxes import paired_box_iou
from ..core.timespan import span_to_frames


@dataclass(frozen=True)
class STVGConvention:
    """How an STVG evaluator picks frames and reads spans (see the module docstring).

    frames: "annotated" (every frame of the video) or "resampled" (TubeDETR: from the segment's first
    frame, the first frame of each new bin floor(frame * eval_fps / fps); then, when more than
    `max_frames`, frame_ids[j * n // max_frames] for j < max_frames).
    gt_includes_last: False reproduces STCAT, which uses the ground truth's inclusive [first, last] as
    an end-exclusive interval in tIoU and vIoU. Predictions are [first, last + 1) in every preset.
    tiou: "interval" (|G ∩ P| / |G ∪ P| of the frame intervals) or "boxed" (HC-STVG's eval_hcvg.py:
    ground-truth frames with a box where the tube has a box, over all frames from min start to max end).
    evaluator: the published code the preset reproduces.
    """

    name: str
    frames: str = "annotated"
    eval_fps: Optional[float] = None
    max_frames: Optional[int] = None
    gt_includes_last: bool = True
    tiou: str = "interval"
    evaluator: str = ""

    def __post_init__(self):
        if self.frames not in ("annotated", "resampled"):
            raise ValueError(f"frames must be 'annotated' or 'resampled', got {self.frames!r}")
        if self.frames == "resampled" and not (self.eval_fps and self.eval_fps > 0):
            raise ValueError(f"frames='resampled' needs eval_fps > 0, got {self.eval_fps!r}")
        if self.tiou not in ("interval", "boxed"):
            raise ValueError(f"tiou must be 'interval' or 'boxed', got {self.tiou!r}")

    def describe(self) -> str:
        frames = "every frame" if self.frames == "annotated" else f"frames resampled at {self.eval_fps:g} fps"
        if self.max_frames:
            frames += f" (at most {self.max_frames})"
        gt = "[first, last + 1)" if self.gt_includes_last else "[first, last)"
        text = f"{self.name}: {frames}; prediction [first, last + 1), ground truth {gt}"
        return text + (f"; reproduces {self.evaluator}" if self.evaluator else "")


TUBEDETR = STVGConvention(
    "tubedetr", frames="resampled", eval_fps=5.0, max_frames=200,
    evaluator="antoyang/TubeDETR datasets/hcstvg_eval.py, datasets/vidstg_eval.py @ d70c0ee",
)
HCSTVG_OFFICIAL = STVGConvention("hcstvg-official", tiou="boxed", evaluator="tzhhhh123/HC-STVG eval_hcvg.py @ 94ab6e9")
STCAT = STVGConvention(
    "stcat", gt_includes_last=False,
    evaluator="jy0205/STCAT datasets/evaluation/hcstvg_eval.py, models/post_processor.py @ 400f548",
)
CONVENTIONS = {c.name: c for c in (TUBEDETR, HCSTVG_OFFICIAL, STCAT)}

STVG_THRESHOLDS = (0.3, 0.5)
VTG_THRESHOLDS = (0.3, 0.5, 0.7)


# ----------------------------------------------------------------------------------------------- STVG


def grid_frame_ids(total_frames: int, fps: float, convention: STVGConvention, segment: Optional[tuple] = None) -> np.ndarray:
    """int [N] ascending frame indices of a `total_frames`-frame video at `fps` that the convention evaluates.

    segment: (first, last) inclusive frames of the part of the video evaluated (a record's `clip`), used by
    "resampled" (TubeDETR takes range(start_frame, end_frame); without a segment, HC-STVG's 0 ..
    total_frames - 2: its end_frame is frame_count - 1, excluded).
    """
    if convention.frames == "annotated":
        return np.arange(total_frames, dtype=np.int64)
    start, stop = (0, total_frames - 1) if segment is None else (segment[0], segment[1] + 1)
    frames = np.arange(start, max(stop, start + 1), dtype=np.int64)
    bins = np.floor(frames * (convention.eval_fps / fps))  # int(frame_id * sampling_rate), frames >= 0
    ids = frames[np.r_[True, bins[1:] > bins[:-1]]]
    n = ids.shape[0]
    if convention.max_frames and n > convention.max_frames:
        ids = ids[np.arange(convention.max_frames) * n // convention.max_frames]
    return ids


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
    (gt_frame_span); segment: the record's `clip` as (first, last) frames, or None. For the video frames
    first_frame, first_frame + 1, ... (the span within [0, total)):
    boxes float [M, 4] pixel xyxy of the annotated box nearest in time; dist float [M] seconds from the
    frame's time to that box's time, inf where that box is not finite or the record has no boxes (its
    boxes are then meaningless). A grid frame has a ground-truth box when dist <= half the grid step
    + 1e-6, as boxes_on_grid places them.
    """

    fps: float
    total: int
    span: Optional[tuple]
    segment: Optional[tuple]
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
    spans = [tuple(map(int, next(edges))) if n else span_to_frames(r["span"], f) for r, f, n in zip(records, fps, counts.tolist())]
    segments = [span_to_frames(r["clip"], f) if r.get("clip") is not None else None for r, f in zip(records, fps)]
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
        STVGGroundTruth(f, t, s, g, f0, frame_boxes[r0:r1], dist[r0:r1])
        for f, t, s, g, f0, r0, r1 in zip(fps, totals, spans, segments, first, rows[:-1], rows[1:])
    ]


@dataclass
class _Grid:
    """A convention's grid for one video length, fps and segment: ids int [N] ascending frame indices (also
    as a list, for bisect), times float [N] seconds (ids / fps), half_step seconds (_half_step)."""

    ids: np.ndarray
    times: np.ndarray
    id_list: list
    half_step: float

    @classmethod
    def build(cls, total: int, fps: float, convention: STVGConvention, segment: Optional[tuple] = None) -> "_Grid":
        ids = grid_frame_ids(total, fps, convention, segment)
        times = ids / fps
        return cls(ids, times, ids.tolist(), _half_step(times))

    def positions(self, start: int, stop: int) -> Tuple[int, int]:
        """Positions [a, b) on the grid of its frames start <= frame < stop."""
        a = bisect_left(self.id_list, start)
        return a, max(a, bisect_left(self.id_list, stop))


@dataclass
class _Query:
    """One query on its grid, by positions [start, stop) of grid frames: `window` those of the ground truth
    (first .. last, every sum runs over them only), `boxed` those of the window where the tube has a box
    (inside its predicted frames), `in_pred` those of the window in G ∩ P (the frames vIoU sums over);
    `hull`: how many evaluated frames lie from the earlier start to the later end; `tiou` (None when the
    preset counts boxed frames, computed with the boxes)."""

    grid: _Grid
    gt: STVGGroundTruth
    tube: Optional[dict]
    pred_span: Optional[tuple]  # (first, last) inclusive frame indices; None = no prediction
    window: Tuple[int, int]
    boxed: Tuple[int, int]
    in_pred: Tuple[int, int]
    hull: int
    tiou: Optional[float]

    @classmethod
    def build(cls, gt: STVGGroundTruth, tube: Optional[dict], grid: _Grid, convention: STVGConvention) -> "_Query":
        a, b = (0, 0) if gt.span is None else grid.positions(gt.span[0], gt.span[1] + 1)
        pred_span = predicted_frames(tube, gt.total, gt.fps)
        if pred_span is None:
            return cls(grid, gt, tube, None, (a, b), (a, a), (a, a), 0, 0.0)

        def within(start, stop):
            start = min(max(a, start), b)
            return start, max(start, min(b, stop))

        # End-exclusive intervals as the evaluators build them: G = [gs, ge), P = [ps, pe).
        gs, ge = gt.span[0], gt.span[1] + (1 if convention.gt_includes_last else 0)
        ps, pe = pred_span[0], pred_span[1] + 1
        boxed = within(*grid.positions(ps, pe)) if tube.get("frames") else (a, a)
        in_pred = within(*grid.positions(max(gs, ps), min(ge, pe)))
        lo, hi = min(gs, ps), max(ge, pe)
        hull = hi - lo if convention.frames == "annotated" else grid.positions(lo, hi)[1] - grid.positions(lo, hi)[0]
        tiou = None
        if convention.tiou == "interval":
            inter = min(ge, pe) - max(gs, ps)
            tiou = 0.0 if inter <= 0 else inter / ((ge - gs) + (pe - ps) - inter)
        return cls(grid, gt, tube, pred_span, (a, b), boxed, in_pred, hull, tiou)


def predicted_frames(tube: Optional[dict], total: int, fps: float) -> Optional[tuple]:
    """A tube's span as (first, last) inclusive frame indices of a `total`-frame video at `fps`
    (core.timespan.span_to_frames, read swapped if reversed, clipped to frames 0 .. total - 1); None when
    the tube has no span."""
    frames = span_to_frames(None if tube is None else tube.get("span"), fps)
    if frames is None:
        return None
    first, last = sorted(frames)
    return (min(max(first, 0), total - 1), min(max(last, 0), total - 1))


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
        at_frames = np.rint(times[t0:t1] * q.gt.fps) / q.gt.fps  # a box at time t is frame round(t * fps)'s
        for c in range(4):
            pred[c, k : k + n] = np.interp(q.grid.times[on_grid], at_frames, boxes[t0:t1, c])
        gt[k : k + n] = q.gt.boxes[q.grid.ids[on_grid] - q.gt.first_frame]
        k += n
    at = _ranges([start + q.boxed[0] - q.window[0] for q, start in boxed], lengths)  # their window positions
    both = has_gt[at] & np.isfinite(pred).all(0)
    iou = np.zeros(frames.size)
    if both.any():
        iou[at[both]] = paired_box_iou(torch.from_numpy(pred[:, both].T), torch.from_numpy(gt[both])).double().numpy()
    return iou, has_gt, starts


def _score_queries(queries: List[_Query]) -> List[Dict[str, float]]:
    """tIoU, vIoU, gt_vIoU of each query, from the box IoUs on its window frames."""
    iou, has_gt, starts = _window_ious(queries)
    gt_iou = iou[has_gt]
    gt_before = np.r_[0, np.cumsum(has_gt)]  # ground-truth frames before each window position
    ends = starts + np.array([q.window[1] - q.window[0] for q in queries], dtype=np.int64)
    scores = []
    for q, start, g0, g1 in zip(queries, starts.tolist(), gt_before[starts].tolist(), gt_before[ends].tolist()):
        gt_viou = _sum(gt_iou[g0:g1]) / max(g1 - g0, 1)
        if q.pred_span is None:
            scores.append({"tiou": 0.0, "viou": 0.0, "gt_viou": gt_viou})
            continue
        offset = start - q.window[0]
        viou = _sum(iou[offset + q.in_pred[0] : offset + q.in_pred[1]]) / max(q.hull, 1)
        tiou = q.tiou
        if tiou is None:  # eval_hcvg.py: ground-truth frames with a box where the tube has one, / all_frame
            all_frame = max(q.gt.span[1], q.pred_span[1]) - min(q.gt.span[0], q.pred_span[0]) + 1
            tiou = int(has_gt[offset + q.boxed[0] : offset + q.boxed[1]].sum()) / all_frame
        scores.append({"tiou": float(tiou), "viou": viou, "gt_viou": gt_viou})
    return scores


def _sum(values: np.ndarray) -> float:
    """Sum left to right, as the published evaluators' loops add (np.sum adds pairwise, which can put a
    vIoU of exactly 0.5 on the other side of a threshold)."""
    return float(np.cumsum(values)[-1]) if values.size else 0.0


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
        key = (gt.total, gt.fps, gt.segment if convention.frames == "resampled" else None)
        if key not in grids:
            grids[key] = _Grid.build(gt.total, gt.fps, convention, key[2])
        queries.append(_Query.build(gt, tube, grids[key], convention))
    return [s for i in range(0, len(queries), batch) for s in _score_queries(queries[i : i + batch])]


def score_stvg(record: dict, tube: Optional[dict], convention: STVGConvention = HCSTVG_OFFICIAL) -> Dict[str, float]:
    """Score one Uni-STG STVG record against a predicted tube (core.tube contract) under `convention`.

    record: "span" seconds, "boxes" [{"t" seconds, "xyxy" pixels}], "fps", "duration" (seconds); the
    ground-truth frames are those of its boxes (gt_frame_span).
    tube: {"span": seconds or None, "frames": [{"t", "box_xyxy"}]}; None or a span of None = no prediction.
    """
    return score_stvg_many([(record, tube)], convention)[0]


def _gt_frame_span(record: dict, fps: float, gt_t: np.ndarray):
    if gt_t.size == 0:
        return span_to_frames(record["span"], fps)
    frames = np.rint(gt_t * fps)
    return (int(frames.min()), int(frames.max()))


def gt_frame_span(record: dict, fps: float):
    """Ground-truth (first, last) inclusive frame indices: those of the first and last annotated box, as the
    field's evaluators take them (TubeDETR's tube frames, HC-STVG's bbox frames); from `span` (seconds,
    core.timespan.span_to_frames) when the record has no boxes. Under the time contract both agree."""
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
    """float [Q] top-1 IoU of predicted and ground-truth spans (seconds); a None prediction scores 0.

    As jayleicn/moment_detr standalone_eval/utils.py compute_temporal_iou_batch_paired (@ b7e553a): the
    intersection over the hull of the two spans (the union when they overlap, and 0 when they do not),
    0 when the hull is empty, computed the same way so thresholds hit exactly agree.
    """
    pred = _spans_array(pred_spans)
    gt = _spans_array(gt_spans)
    missing = ~np.isfinite(pred).all(1)
    pred[missing] = 0.0
    inter = np.maximum(0, np.minimum(pred[:, 1], gt[:, 1]) - np.maximum(pred[:, 0], gt[:, 0]))
    hull = np.maximum(pred[:, 1], gt[:, 1]) - np.minimum(pred[:, 0], gt[:, 0])
    iou = np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)
    iou[missing] = 0.0
    return iou


def summarize_vtg(ious, thresholds: Sequence[float] = VTG_THRESHOLDS) -> Dict[str, float]:
    """R@1 at IoU m (IoU >= m, as moment_detr's compute_mr_r1) for m in thresholds, mIoU and n, from
    per-query top-1 IoUs [Q]."""
    ious = np.asarray(ious, dtype=np.float64)
    out = {f"R@1,IoU={m:g}": _mean(ious >= m) if ious.size else math.nan for m in thresholds}
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
    """DiDeMo as LisaAnne/LocalizingMoments utils/eval.py (eval_predictions, @ b6a555c), one prediction
    per query.

    pred_chunks: [Q] inclusive chunk spans (s, e) or None. annotator_chunks: [Q] lists of annotators'
    inclusive chunk spans. IoU = (min end + 1 - max start) / (max end + 1 - min start); per query the
    best 3 annotators' IoUs are averaged (mIoU). R@1: the official rule averages the rank of each of the
    best 3 annotators' moments in the ranked prediction and needs that mean <= 1, so the top prediction
    must equal the moment of 3 annotators (of all of them when there are fewer than 3). A query without a
    prediction scores 0.
    """
    r1, miou = [], []
    for pred, annotators in zip(pred_chunks, annotator_chunks):
        if pred is None:
            r1.append(0.0)
            miou.append(0.0)
            continue
        gt = np.asarray(annotators, dtype=np.float64).reshape(-1, 2)
        inter = np.maximum(0, np.minimum(gt[:, 1], pred[1]) + 1 - np.maximum(gt[:, 0], pred[0]))
        union = np.maximum(gt[:, 1], pred[1]) + 1 - np.minimum(gt[:, 0], pred[0])
        miou.append(float(np.mean(np.sort(inter / union)[-3:])))
        agree = sum(tuple(map(int, g)) == tuple(pred) for g in gt)
        r1.append(float(agree >= min(3, len(gt))))
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
