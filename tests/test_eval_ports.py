"""The metric presets against independent ports of the published evaluators they are named after.

Each port below is written from the public code (repository, file, function and commit in its docstring),
kept as close to it as Python 3 allows, and fed the inputs that evaluator takes (frame indices, per-frame
box dicts, its span forms). The adapters between a Uni-STG (record, tube) pair and those inputs follow the
time contract (llava_st.core.timespan): ground-truth frames are those of the first and last box, a tube's
frames `predicted_frames` of its span, its box on a frame the linear interpolation of its boxes
(eval.metrics.boxes_on_grid). Every preset is compared per query and aggregated on >= 1,000 random cases
plus hand-made edge cases (empty and one-frame spans, disjoint, contained, identical, zero-area boxes,
missing boxes, thresholds hit exactly); the differences must be float rounding (<= 1e-9) or, where the
port gives NaN for two zero-area boxes, a documented 0.
"""

import json
import math

import numpy as np
import pytest

from llava_st.core.timespan import frame_time, frames_to_span, span_to_frames
from llava_st.eval import metrics as M

TOL = 1e-9
FAR = [-2.0, -2.0, -1.0, -1.0]  # a box with IoU 0 against any box inside an image


# ------------------------------------------------------------------------------------------------ ports


def tubedetr_np_box_iou(boxes1, boxes2):
    """antoyang/TubeDETR util/box_ops.py np_box_iou (with np_box_area, _box_inter_union) @ d70c0ee."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = np.maximum(boxes1[:, None, :2], boxes2[:, :2])
    rb = np.minimum(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clip(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    union = area1[:, None] + area2 - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def tubedetr_frame_ids(start_frame, end_frame, video_fps, fps=5, video_max_len=200):
    """The frames TubeDETR evaluates: datasets/vidstg_eval.py VidSTGiouEvaluator.__init__ (and
    hcstvg_eval.py HCSTVGGiouEvaluator.__init__ with start_frame 0, end_frame frame_count - 1) @ d70c0ee."""
    sampling_rate = fps / video_fps
    frame_ids = [start_frame]
    for frame_id in range(start_frame, end_frame):
        if int(frame_ids[-1] * sampling_rate) < int(frame_id * sampling_rate):
            frame_ids.append(frame_id)
    if len(frame_ids) > video_max_len:
        frame_ids = [frame_ids[(j * len(frame_ids)) // video_max_len] for j in range(video_max_len)]
    return frame_ids


def tubedetr_video_metrics(frame_ids, gt_sted, trajectory, pred_sted, predictions):
    """One video of TubeDETR's evaluate (datasets/hcstvg_eval.py / vidstg_eval.py, tmp_loc=True) @ d70c0ee.

    gt_sted: [tube_start_frame, tube_end_frame) ; trajectory: {frame: [x1, y1, x2, y2]} of the tube;
    pred_sted: [start, end) as its PostProcessSTVG gives (end frame + 1); predictions: {frame: box} for
    every sampled frame. Returns {"tiou", "viou", "gt_viou"}.
    """
    inter_frames = [f for f in frame_ids if gt_sted[0] <= f < gt_sted[1]]
    max_start, min_end = max(gt_sted[0], pred_sted[0]), min(gt_sted[1], pred_sted[1])
    min_start, max_end = min(gt_sted[0], pred_sted[0]), max(gt_sted[1], pred_sted[1])
    if min_end <= max_start:
        tiou = 0
    else:
        intersection = min_end - max_start
        union = (gt_sted[1] - gt_sted[0]) + (pred_sted[1] - pred_sted[0]) - intersection
        tiou = intersection / union
    union_predgt = [f for f in frame_ids if min_start <= f < max_end]
    inter_predgt = set(f for f in frame_ids if max_start <= f < min_end)
    viou = gt_viou = 0
    for f in inter_frames:
        iou = tubedetr_np_box_iou(np.array([predictions[f]]), np.array([trajectory[f]]))[0][0]
        if f in inter_predgt:
            viou += iou
        gt_viou += iou
    return {"tiou": tiou, "viou": viou / max(len(union_predgt), 1), "gt_viou": gt_viou / max(len(inter_frames), 1)}


def hcvg_iou2d(box1, box2):
    """tzhhhh123/HC-STVG eval_hcvg.py iou2d @ 94ab6e9."""
    area1 = (box1[2] - box1[0]) * (box1[3] - box1[1])
    area2 = (box2[2] - box2[0]) * (box2[3] - box2[1])
    area_sum = area1 + area2
    x1, y1 = max(box1[0], box2[0]), max(box1[1], box2[1])
    x2, y2 = min(box1[2], box2[2]), min(box1[3], box2[3])
    if x1 >= x2 or y1 >= y2:
        return 0
    inter_area = (x2 - x1) * (y2 - y1)
    return inter_area / (area_sum - inter_area)


def hcvg_eval(pred, gt):
    """tzhhhh123/HC-STVG eval_hcvg.py hcvg_eval @ 94ab6e9, on the loaded dicts (not file paths); returns
    ([mean vIoU, mean tIoU, vIoU@0.3, vIoU@0.5], per-video vIoUs, per-video tIoUs)."""
    vious, tious = [], []
    for video in gt:
        if video not in pred:
            viou = tiou = 0
        else:
            gt_v, pred_v = gt[video], pred[video]
            ious = [hcvg_iou2d(pred_v["bbox"][f], gt_v["bbox"][f]) for f in gt_v["bbox"] if f in pred_v["bbox"]]
            all_frame = max(gt_v["ed_frame"], pred_v["ed_frame"]) - min(gt_v["st_frame"], pred_v["st_frame"]) + 1
            viou = sum(ious) / all_frame
            tiou = len(ious) / all_frame
        vious.append(viou)
        tious.append(tiou)
    vious = np.array(vious)
    return [np.mean(vious), np.mean(tious), np.mean((vious > 0.3) + 0), np.mean((vious > 0.5) + 0)], vious, np.array(tious)


def stcat_video_metrics(gt_sted, gt_boxes, pred_sted, prediction):
    """One video of jy0205/STCAT datasets/evaluation/hcstvg_eval.py HCSTVGiouEvaluator.evaluate @ 400f548.

    gt_sted: gt_temp_bound [begin, end] (inclusive, as datasets/hcstvg.py builds it); gt_boxes: {fid: box}
    for fid in begin..end; pred_sted: [start, end + 1] (models/post_processor.py); prediction: {fid: box}.
    """
    max_start, min_end = max(gt_sted[0], pred_sted[0]), min(gt_sted[1], pred_sted[1])
    min_start, max_end = min(gt_sted[0], pred_sted[0]), max(gt_sted[1], pred_sted[1])
    if min_end <= max_start:
        tiou = 0
    else:
        intersection = min_end - max_start
        union = (gt_sted[1] - gt_sted[0]) + (pred_sted[1] - pred_sted[0]) - intersection
        tiou = intersection / union
    union_predgt = set(range(min_start, max_end))
    inter_predgt = set(range(max_start, min_end))
    viou = gt_viou = 0
    for fid in gt_boxes:
        iou = tubedetr_np_box_iou(np.array([prediction[fid]]), np.array([gt_boxes[fid]]))[0][0]  # STCAT's np_box_iou is TubeDETR's
        if fid in inter_predgt:
            viou += iou
        gt_viou += iou
    return {"tiou": tiou, "viou": viou / max(len(union_predgt), 1), "gt_viou": gt_viou / max(len(gt_boxes), 1)}


def moment_detr_paired_iou(pred_windows, gt_windows):
    """jayleicn/moment_detr standalone_eval/utils.py compute_temporal_iou_batch_paired @ b7e553a."""
    intersection = np.maximum(0, np.minimum(pred_windows[:, 1], gt_windows[:, 1]) - np.maximum(pred_windows[:, 0], gt_windows[:, 0]))
    union = np.maximum(pred_windows[:, 1], gt_windows[:, 1]) - np.minimum(pred_windows[:, 0], gt_windows[:, 0])
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union != 0)


def didemo_eval_predictions(segments, data):
    """LisaAnne/LocalizingMoments utils/eval.py eval_predictions (iou, rank) @ b6a555c, in Python 3; returns
    (rank@1, rank@5, mean IoU)."""

    def iou(pred, gt):
        intersection = max(0, min(pred[1], gt[1]) + 1 - max(pred[0], gt[0]))
        union = max(pred[1], gt[1]) + 1 - min(pred[0], gt[0])
        return float(intersection) / union

    def rank(pred, gt):
        return pred.index(tuple(gt)) + 1

    average_ranks, average_iou = [], []
    for s, d in zip(segments, data):
        pred = s[0]
        ious = [iou(pred, t) for t in d["times"]]
        average_iou.append(np.mean(np.sort(ious)[-3:]))
        ranks = [rank(s, t) for t in d["times"]]
        average_ranks.append(np.mean(np.sort(ranks)[:3]))
    rank1 = np.sum(np.array(average_ranks) <= 1) / float(len(average_ranks))
    rank5 = np.sum(np.array(average_ranks) <= 5) / float(len(average_ranks))
    return rank1, rank5, np.mean(average_iou)


DIDEMO_MOMENTS = [(s, e) for s in range(6) for e in range(s, 6)]  # the 21 moments of a DiDeMo video


# --------------------------------------------------------------------------------- cases and adapters


def _record(first, last, fps, duration, rng, gaps=False, clip=None):
    """A record as the converters write it (time contract): a box on every frame first..last at t = k / fps
    (with `gaps`, some frames without one), span = frames_to_span(first, last)."""
    x, y, w, h = rng.uniform(0, 200), rng.uniform(0, 150), rng.uniform(20, 120), rng.uniform(20, 120)
    frames = [k for k in range(first, last + 1) if not (gaps and 0 < k - first < last - first and rng.random() < 0.3)]
    boxes = [{"t": frame_time(k, fps), "xyxy": [x + k * 0.7, y, x + k * 0.7 + w, y + h]} for k in frames]
    record = {"id": "r", "span": list(frames_to_span(first, last, fps)), "boxes": boxes, "fps": fps, "duration": duration}
    if clip is not None:
        record["clip"] = list(frames_to_span(clip[0], clip[1], fps))
    return record


def _tube_like(record, rng, kind):
    """A predicted tube for `record`: identical, shifted by frames, contained, containing, disjoint, one
    frame, random, without boxes, with zero-area boxes, half-overlapping boxes (IoU exactly 0.5), or none."""
    fps, total = record["fps"], int(round(record["duration"] * record["fps"]))
    first, last = M.gt_frame_span(record, fps)
    boxes = {int(round(b["t"] * fps)): b["xyxy"] for b in record["boxes"]}
    if kind == "none":
        return None
    if kind == "identical":
        return {"span": list(record["span"]), "frames": [{"t": b["t"], "box_xyxy": list(b["xyxy"])} for b in record["boxes"]]}
    if kind == "half":  # the upper half of every ground-truth box: IoU exactly 0.5 on every frame
        return {"span": list(record["span"]), "frames": [{"t": b["t"], "box_xyxy": [*b["xyxy"][:3], (b["xyxy"][1] + b["xyxy"][3]) / 2]}
                                                       for b in record["boxes"]]}
    if kind == "shift":
        d = int(rng.choice([-2, -1, 1, 2]))
        a, b = min(max(first + d, 0), total - 1), min(max(last + d, 0), total - 1)
    elif kind == "contained":
        a = int(rng.integers(first, last + 1))
        b = int(rng.integers(a, last + 1))
    elif kind == "containing":
        a, b = max(first - int(rng.integers(0, 30)), 0), min(last + int(rng.integers(0, 30)), total - 1)
    elif kind == "disjoint":
        a = int(rng.integers(last + 1, total)) if last + 1 < total else 0
        b = int(rng.integers(a, total)) if last + 1 < total else max(first - 1, 0)
    elif kind == "one":
        a = b = int(rng.integers(max(first - 2, 0), min(last + 3, total)))
    else:
        a, b = sorted(int(v) for v in rng.integers(0, total, 2))
    span = [frame_time(a, fps), frame_time(b, fps)]
    if kind == "noboxes":
        return {"span": span, "frames": []}
    times = np.sort(rng.uniform(span[0] - 0.3, span[1] + 0.3, int(rng.integers(1, 12))))
    frames = []
    for t in times:
        k = min(boxes, key=lambda f: abs(f - t * fps)) if boxes else first
        x1, y1, x2, y2 = boxes.get(k, [10, 10, 60, 60])
        jitter = rng.normal(0, 6, 4)
        box = [x1 + jitter[0], y1 + jitter[1], x2 + jitter[2], y2 + jitter[3]]
        if kind == "zero":
            box = [box[0], box[1], box[0], box[3]]
        frames.append({"t": float(t), "box_xyxy": [float(v) for v in box]})
    return {"span": span, "frames": frames}


KINDS = ("identical", "half", "shift", "contained", "containing", "disjoint", "one", "random", "noboxes", "zero", "none")


def _cases(rng, n, style):
    """n random (record, tube) pairs of a dataset style: "hcstvg" (20-s clips at img_num / 20 fps, no
    segment), "vidstg" (a used segment inside the video), with or without missing ground-truth boxes."""
    cases = []
    for i in range(n):
        if style.startswith("hcstvg"):
            fps, duration = float(rng.choice([499, 500, 600, 480, 300])) / 20, 20.0
            clip = None
        else:
            fps = float(rng.choice([25.0, 30.0, 29.97, 24.0, 15.0]))
            duration = float(rng.uniform(5, 70))
        total = int(round(duration * fps))
        first = int(rng.integers(0, total))
        last = min(first + int(rng.integers(0, 250 if i % 7 else 2)), total - 1)
        if style == "vidstg":
            clip = (int(rng.integers(0, first + 1)), int(rng.integers(last, total)))
        record = _record(first, last, fps, duration, rng, gaps=style.endswith("gaps"), clip=clip)
        cases.append((record, _tube_like(record, rng, KINDS[i % len(KINDS)])))
    return cases


def _tube_box_on(tube, frames, first, last, fps):
    """{frame: box} of the tube on `frames` inside its predicted frames first..last (boxes_on_grid)."""
    inside = [f for f in frames if first <= f <= last]
    if not inside or not tube.get("frames"):
        return {}
    ts = [round(f["t"] * fps) / fps for f in tube["frames"]]  # a box at time t is frame round(t * fps)'s
    on = M.boxes_on_grid(ts, [f["box_xyxy"] for f in tube["frames"]], np.array(inside) / fps, span=(first / fps, last / fps))
    return {f: [float(v) for v in box] for f, box in zip(inside, on)}


def _gt_boxes(record):
    fps = record["fps"]
    return {int(round(b["t"] * fps)): [float(v) for v in b["xyxy"]] for b in record["boxes"]}


def tubedetr_adapter(record, tube):
    fps, total = record["fps"], int(round(record["duration"] * record["fps"]))
    if record.get("clip") is not None:  # VidSTG: its used segment [start_frame, end_frame)
        start, end = (int(round(c * fps)) for c in record["clip"])
        frame_ids = tubedetr_frame_ids(start, end + 1, fps)
    else:  # HC-STVG: video_fps = frame_count / 20, frames 0 .. frame_count - 1 (excluded)
        frame_ids = tubedetr_frame_ids(0, total - 1, total / 20)
    first, last = M.gt_frame_span(record, fps)
    pred = M.predicted_frames(tube, total, fps)
    if pred is None:
        return None
    boxes = _tube_box_on(tube, frame_ids, *pred, fps)
    predictions = {f: boxes.get(f, FAR) for f in frame_ids}
    return tubedetr_video_metrics(frame_ids, [first, last + 1], _gt_boxes(record), [pred[0], pred[1] + 1], predictions)


def stcat_adapter(record, tube):
    fps, total = record["fps"], int(round(record["duration"] * record["fps"]))
    first, last = M.gt_frame_span(record, fps)
    pred = M.predicted_frames(tube, total, fps)
    if pred is None:
        return None
    gt = _gt_boxes(record)
    boxes = _tube_box_on(tube, list(gt), *pred, fps)
    return stcat_video_metrics([first, last], gt, [pred[0], pred[1] + 1], {f: boxes.get(f, FAR) for f in gt})


def hcvg_inputs(pairs):
    gt, pred = {}, {}
    for i, (record, tube) in enumerate(pairs):
        fps, total = record["fps"], int(round(record["duration"] * record["fps"]))
        first, last = M.gt_frame_span(record, fps)
        gt[str(i)] = {"st_frame": first, "ed_frame": last, "bbox": {str(f): b for f, b in _gt_boxes(record).items()}}
        frames = M.predicted_frames(tube, total, fps)
        if frames is not None:
            boxes = _tube_box_on(tube, range(frames[0], frames[1] + 1), *frames, fps)
            pred[str(i)] = {"st_frame": frames[0], "ed_frame": frames[1], "bbox": {str(f): b for f, b in boxes.items()}}
    return pred, gt


def _zero_area_both(record, tube):
    """Whether some frame the evaluator sums over has a zero-area ground-truth and predicted box."""
    return any((b["xyxy"][2] - b["xyxy"][0]) * (b["xyxy"][3] - b["xyxy"][1]) == 0 for b in record["boxes"]) and tube is not None


def _compare(ours, theirs, name):
    for key in ("tiou", "viou", "gt_viou"):
        assert abs(ours[key] - theirs[key]) <= TOL, (name, key, ours, theirs)


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("style", ["hcstvg", "vidstg"])
def test_tubedetr_preset_reproduces_tubedetr(style):
    rng = np.random.default_rng(1 if style == "hcstvg" else 2)
    pairs = _cases(rng, 1100, style)
    ours = M.score_stvg_many(pairs, M.TUBEDETR)
    theirs = []
    for (record, tube), s in zip(pairs, ours):
        t = tubedetr_adapter(record, tube)
        theirs.append(t or {"tiou": 0.0, "viou": 0.0, "gt_viou": s["gt_viou"]})
        if t is not None:
            _compare(s, t, f"tubedetr/{style}")
    assert sum(s["viou"] > 0 for s in ours) > 300 and sum(s["tiou"] == 1.0 for s in ours) > 50
    mine, port = M.summarize_stvg(ours), M.summarize_stvg(theirs)
    for key in ("m_tIoU", "m_vIoU", "vIoU@0.3", "vIoU@0.5"):
        assert abs(mine[key] - port[key]) <= TOL, key


def test_tubedetr_grid_is_tubedetrs():
    rng = np.random.default_rng(3)
    for _ in range(300):
        fps = float(rng.choice([25.0, 30.0, 29.97, 24.95, 12.0, 5.0, 6.0]))
        total = int(rng.integers(1, 3000))
        start = int(rng.integers(0, total))
        end = int(rng.integers(start, total + 1))
        assert M.grid_frame_ids(total, fps, M.TUBEDETR, (start, end - 1)).tolist() == tubedetr_frame_ids(start, end, fps)
        assert M.grid_frame_ids(total, fps, M.TUBEDETR).tolist() == tubedetr_frame_ids(0, total - 1, fps)


@pytest.mark.parametrize("style", ["hcstvg", "hcstvg-gaps"])
def test_hcstvg_official_preset_reproduces_eval_hcvg(style):
    rng = np.random.default_rng(4 if style == "hcstvg" else 5)
    pairs = _cases(rng, 1100, style)
    ours = M.score_stvg_many(pairs, M.HCSTVG_OFFICIAL)
    pred, gt = hcvg_inputs(pairs)
    (m_viou, m_tiou, r3, r5), vious, tious = hcvg_eval(pred, gt)
    assert np.abs(np.array([s["viou"] for s in ours]) - vious).max() <= TOL
    assert np.abs(np.array([s["tiou"] for s in ours]) - tious).max() <= TOL
    summary = M.summarize_stvg(ours)
    assert abs(summary["m_vIoU"] - m_viou) <= TOL and abs(summary["m_tIoU"] - m_tiou) <= TOL
    assert summary["vIoU@0.3"] == r3 and summary["vIoU@0.5"] == r5
    assert sum(s["viou"] > 0 for s in ours) > 300 and sum(t == 0 for t in tious) > 100


def test_stcat_preset_reproduces_stcat():
    rng = np.random.default_rng(6)
    pairs = _cases(rng, 1100, "hcstvg")
    ours = M.score_stvg_many(pairs, M.STCAT)
    for (record, tube), s in zip(pairs, ours):
        t = stcat_adapter(record, tube)
        if t is None:
            assert s["tiou"] == s["viou"] == 0.0
        else:
            _compare(s, t, "stcat")
    assert sum(s["viou"] > 0 for s in ours) > 300


def test_threshold_hit_exactly_is_not_above_it():
    # The upper half of every ground-truth box: IoU exactly 0.5 on every frame, identical spans.
    rng = np.random.default_rng(7)
    record = _record(10, 29, 10.0, 4.0, rng)
    for b in record["boxes"]:
        b["xyxy"] = [10.0, 10.0, 30.0, 30.0]
    tube = _tube_like(record, rng, "half")  # [10, 10, 30, 20]: IoU 200 / 400
    for convention in (M.TUBEDETR, M.HCSTVG_OFFICIAL):
        s = M.score_stvg(record, tube, convention)
        assert s["viou"] == 0.5 and M.summarize_stvg([s])["vIoU@0.5"] == 0.0
    port = tubedetr_adapter(record, tube)
    assert port["viou"] == 0.5 and not port["viou"] > 0.5


def test_two_zero_area_boxes_are_iou_0_here_and_nan_in_tubedetr():
    rng = np.random.default_rng(8)
    record = _record(10, 19, 10.0, 4.0, rng)
    for b in record["boxes"]:
        b["xyxy"][2] = b["xyxy"][0]  # zero width
    tube = {"span": list(record["span"]), "frames": [{"t": b["t"], "box_xyxy": list(b["xyxy"])} for b in record["boxes"]]}
    assert _zero_area_both(record, tube)
    port = tubedetr_adapter(record, tube)
    assert math.isnan(port["viou"]) and math.isnan(port["gt_viou"])
    ours = M.score_stvg(record, tube, M.TUBEDETR)
    assert ours["viou"] == 0.0 and ours["gt_viou"] == 0.0 and ours["tiou"] == 1.0
    assert hcvg_eval(*hcvg_inputs([(record, tube)]))[0][0] == M.score_stvg(record, tube, M.HCSTVG_OFFICIAL)["viou"] == 0.0


def test_vtg_reproduces_moment_detr():
    rng = np.random.default_rng(9)
    n = 2000
    gt = np.sort(rng.uniform(0, 60, (n, 2)).round(1), axis=1)
    pred = np.sort(rng.uniform(0, 60, (n, 2)).round(1), axis=1)
    pred[::10] = gt[::10]  # identical
    pred[1::10, 0] = pred[1::10, 1]  # empty span
    pred[2::10] = np.stack([gt[2::10, 0], (gt[2::10, 0] + gt[2::10, 1]) / 2], axis=1)  # half of it: IoU 0.5 exactly (up to rounding)
    pred[3::10] = np.stack([gt[3::10, 1], gt[3::10, 1] + 5], axis=1)  # touching
    ours = M.vtg_ious([tuple(p) for p in pred], [tuple(g) for g in gt])
    theirs = moment_detr_paired_iou(pred, gt)
    assert np.array_equal(ours, theirs)
    summary = M.summarize_vtg(ours)
    for m in M.VTG_THRESHOLDS:
        assert summary[f"R@1,IoU={m:g}"] == np.mean(theirs >= m)
    assert np.all(M.vtg_ious([None], [(1.0, 2.0)]) == 0.0)


def test_didemo_reproduces_localizing_moments():
    rng = np.random.default_rng(10)
    preds, annotators, segments, data = [], [], [], []
    for i in range(1500):
        times = [DIDEMO_MOMENTS[int(k)] for k in rng.integers(0, 21, int(rng.integers(1, 6)))]
        if i % 3 == 0:  # several annotators agree
            times = times[:1] * int(rng.integers(1, 5)) + times[1:]
        pred = times[0] if i % 2 else DIDEMO_MOMENTS[int(rng.integers(0, 21))]
        ranked = [pred] + [m for m in DIDEMO_MOMENTS if m != pred]
        preds.append(pred)
        annotators.append(times)
        segments.append(ranked)
        data.append({"times": [list(t) for t in times]})
    rank1, _, miou = didemo_eval_predictions(segments, data)
    ours = M.didemo_scores(preds, annotators)
    assert ours["R@1"] == rank1 and abs(ours["mIoU"] - miou) <= TOL
    # The example: prediction (0, 4), annotators [[3, 3], [0, 4], [3, 4], [0, 4]]: mean rank 2, no hit.
    example = [(3, 3), (0, 4), (3, 4), (0, 4)]
    assert M.didemo_scores([(0, 4)], [example])["R@1"] == 0.0
    assert didemo_eval_predictions([[(0, 4)] + [m for m in DIDEMO_MOMENTS if m != (0, 4)]], [{"times": example}])[0] == 0.0


# --------------------------------------------------------------------- the time contract, end to end


def _hcstvg_file(path, rng, n=60):
    """A random HC-STVG v1 annotation file in the official format (1-based st_frame, one box per frame)."""
    data = {}
    for i in range(n):
        img_num = int(rng.choice([499, 500, 600, 480]))
        length = int(rng.integers(1, 200))
        st = int(rng.integers(1, img_num - length + 1))
        x, y = float(rng.uniform(0, 300)), float(rng.uniform(0, 100))
        data[f"{i}_v{i}.mp4"] = {"bbox": [[x + k, y, 40.0, 80.0] for k in range(length)], "st_time": 0.0, "ed_time": 0.0,
                                 "img_num": img_num, "caption": "a man walks.", "width": 640, "height": 360, "st_frame": st}
    path.write_text(json.dumps(data))
    return str(path)


def _vidstg_tubedetr_file(path, rng, n=60):
    """A random VidSTG file in TubeDETR's preprocessed form (exclusive tube_end_frame and end_frame)."""
    videos, trajectories = [], {}
    for i in range(n):
        fps = float(rng.choice([25.0, 29.97, 30.0]))
        frame_count = int(rng.integers(100, 1500))
        start = int(rng.integers(0, frame_count // 3))
        end = int(rng.integers(2 * frame_count // 3, frame_count + 1))
        t0 = int(rng.integers(start, end - 1))
        t1 = int(rng.integers(t0 + 1, end + 1))
        trajectories[str(i)] = {"0": {str(f): {"bbox": [10.0 + f % 50, 20.0, 50.0, 60.0]} for f in range(t0, t1)}}
        videos.append({"original_video_id": str(i), "frame_count": frame_count, "fps": fps, "width": 640, "height": 480,
                       "start_frame": start, "end_frame": end, "tube_start_frame": t0, "tube_end_frame": t1,
                       "video_path": f"v{i}.mp4", "caption": "the dog runs.", "type": "dog", "target_id": 0,
                       "video_id": i, "qtype": "declarative"})
    path.write_text(json.dumps({"videos": videos, "trajectories": trajectories}))
    return str(path)


def _vidstg_original_files(folder, rng, n=30):
    """Random VidSTG annotations in the original form (exclusive end_fid) and their VidOR files, nested as
    VidOR ships them (annotation/<split>/<group>/<file>.json, keyed by the video_id inside)."""
    items = []
    for i in range(n):
        fps = float(rng.choice([25.0, 29.97, 30.0]))
        frame_count = int(rng.integers(60, 900))
        start, end = int(rng.integers(0, frame_count // 3)), int(rng.integers(2 * frame_count // 3, frame_count + 1))
        t0 = int(rng.integers(start, end - 1))
        t1 = int(rng.integers(t0 + 1, end + 1))
        box = [{"xmin": 10 + f % 40, "ymin": 20, "xmax": 60 + f % 40, "ymax": 90} for f in range(frame_count)]
        trajectories = [[{"tid": 0, "bbox": b}] for b in box]
        group = folder / "annotation" / "training" / f"{i % 3:04d}"
        group.mkdir(parents=True, exist_ok=True)
        (group / f"file{i}.json").write_text(json.dumps({"video_id": f"vid{i}", "video_path": f"{i % 3:04d}/vid{i}.mp4",
                                                         "trajectories": trajectories}))
        items.append({"vid": f"vid{i}", "fps": fps, "frame_count": frame_count, "width": 640, "height": 480,
                      "used_segment": {"begin_fid": start, "end_fid": end}, "temporal_gt": {"begin_fid": t0, "end_fid": t1},
                      "subject/objects": [{"tid": 0, "category": "adult"}],
                      "captions": [{"description": "An adult walks.", "type": "adult", "target_id": 0}], "questions": []})
    (folder / "ann.json").write_text(json.dumps(items))
    return str(folder / "ann.json"), str(folder / "annotation")


def _converted(tmp_path):
    """Records of every STVG converter, converted from random files in its official format."""
    from llava_st.data.convert import Drops, convert_hcstvg, convert_vidstg, convert_vidstg_tubedetr

    rng = np.random.default_rng(11)
    hc = list(convert_hcstvg(_hcstvg_file(tmp_path / "hc.json", rng), drops=Drops()))
    vid = list(convert_vidstg_tubedetr(_vidstg_tubedetr_file(tmp_path / "vid.json", rng), drops=Drops()))
    original = list(convert_vidstg(*_vidstg_original_files(tmp_path / "vidstg", rng), drops=Drops()))
    assert len(hc) == 60 and len(vid) == 60 and len(original) == 30
    return hc + vid + original


def test_a_tube_equal_to_its_converted_record_scores_1(tmp_path):
    checked_short = 0
    for record in _converted(tmp_path):
        fps = record["fps"]
        first, last = M.gt_frame_span(record, fps)
        assert M.predicted_frames({"span": record["span"]}, int(round(record["duration"] * fps)), fps) == (first, last), record["id"]
        tube = {"span": record["span"], "frames": [{"t": b["t"], "box_xyxy": b["xyxy"]} for b in record["boxes"]]}
        s = M.score_stvg(record, tube, M.HCSTVG_OFFICIAL)
        assert s["tiou"] == 1.0 and abs(s["viou"] - 1.0) <= 1e-12, (record["id"], s)
        # TubeDETR: 1 too, unless no 5-fps frame falls inside a very short tube (vIoU 0 then, as TubeDETR's).
        s = M.score_stvg(record, tube, M.TUBEDETR)
        assert s["tiou"] == 1.0 and abs(s["viou"] - tubedetr_adapter(record, tube)["viou"]) <= TOL, record["id"]
        sampled = [f for f in M.grid_frame_ids(int(round(record["duration"] * fps)), fps, M.TUBEDETR,
                                               span_to_frames(record.get("clip"), fps)) if first <= f <= last]
        assert abs(s["viou"] - (1.0 if sampled else 0.0)) <= 1e-12, (record["id"], s)
        checked_short += not sampled
        # STCAT's own evaluator scores a perfect tube of n frames (n - 1) / n: the preset gives that too.
        n = last - first + 1
        s = M.score_stvg(record, tube, M.STCAT)
        port = stcat_adapter(record, tube)
        assert abs(s["tiou"] - (n - 1) / n) <= TOL and abs(s["tiou"] - port["tiou"]) <= TOL
        assert abs(s["viou"] - port["viou"]) <= TOL
    assert checked_short < 10


def test_a_tube_one_frame_off_scores_what_each_evaluator_gives(tmp_path):
    for record in _converted(tmp_path):
        fps = record["fps"]
        for shift in (-1, 1):
            tube = {"span": [record["span"][0] + shift / fps, record["span"][1] + shift / fps],
                    "frames": [{"t": b["t"] + shift / fps, "box_xyxy": b["xyxy"]} for b in record["boxes"]]}
            t = tubedetr_adapter(record, tube)
            _compare(M.score_stvg(record, tube, M.TUBEDETR), t, "tubedetr")
            _compare(M.score_stvg(record, tube, M.STCAT), stcat_adapter(record, tube), "stcat")
            pred, gt = hcvg_inputs([(record, tube)])
            _, vious, tious = hcvg_eval(pred, gt)
            s = M.score_stvg(record, tube, M.HCSTVG_OFFICIAL)
            assert abs(s["viou"] - vious[0]) <= TOL and abs(s["tiou"] - tious[0]) <= TOL
            if M.gt_frame_span(record, fps)[1] > M.gt_frame_span(record, fps)[0] + 2:
                assert s["tiou"] < 1.0
