"""Hand-worked cases for the STVG / VTG / REC metrics, the field's conventions, and TubeDETR issue 3."""

import math

import numpy as np
import pytest

from llava_st.eval import metrics as M

NAN4 = [math.nan] * 4


def _pair(gt_frames, pred_frames, gt_box, pred_box, fps=10.0, duration=1.0):
    """A record with `gt_box` on frames gt_frames[0]..gt_frames[1] and a tube over pred_frames (None: no
    prediction) with `pred_box` on each of its frames (inclusive frame spans, time contract)."""
    record = {
        "id": "r",
        "span": [gt_frames[0] / fps, gt_frames[1] / fps],
        "boxes": [{"t": f / fps, "xyxy": list(gt_box)} for f in range(gt_frames[0], gt_frames[1] + 1)],
        "fps": fps,
        "duration": duration,
    }
    if pred_frames is None:
        return record, None
    frames = [{"t": f / fps, "box_xyxy": list(pred_box)} for f in range(pred_frames[0], pred_frames[1] + 1)]
    return record, {"span": [pred_frames[0] / fps, pred_frames[1] / fps], "frames": frames}


def test_stvg_hand_worked_partial_overlap():
    # gt frames 2..5, pred 4..7; boxes IoU 0.5 on the shared frames 4, 5; hull 2..7 = 6 frames.
    s = M.score_stvg(*_pair((2, 5), (4, 7), [0, 0, 10, 10], [0, 0, 10, 5]), M.HCSTVG_OFFICIAL)
    assert s["tiou"] == pytest.approx(2 / 6)
    assert s["viou"] == pytest.approx((0.5 + 0.5) / 6)
    assert s["gt_viou"] == pytest.approx((0 + 0 + 0.5 + 0.5) / 4)
    # STCAT: ground truth [2, 5), prediction [4, 8): 1 shared frame, 6 in the union.
    s = M.score_stvg(*_pair((2, 5), (4, 7), [0, 0, 10, 10], [0, 0, 10, 5]), M.STCAT)
    assert s["tiou"] == pytest.approx(1 / 6) and s["viou"] == pytest.approx(0.5 / 6)


def test_stvg_no_overlap_scores_zero():
    for convention in M.CONVENTIONS.values():
        s = M.score_stvg(*_pair((1, 3), (6, 8), [0, 0, 10, 10], [0, 0, 10, 10]), convention)
        assert s == {"tiou": 0.0, "viou": 0.0, "gt_viou": 0.0}


def test_stvg_touching_spans_official_vs_stcat():
    # HC-STVG: spans 0..4 and 4..9 share frame 4 (1 of 10 frames). STCAT: ground truth [0, 4) only touches [4, 10).
    pair = _pair((0, 4), (4, 9), [0, 0, 10, 10], [0, 0, 10, 10])
    official = M.score_stvg(*pair, M.HCSTVG_OFFICIAL)
    assert official["tiou"] == pytest.approx(1 / 10) and official["viou"] == pytest.approx(1 / 10)
    stcat = M.score_stvg(*pair, M.STCAT)
    assert stcat["tiou"] == 0.0 and stcat["viou"] == 0.0


def test_stvg_single_frame_span():
    pair = _pair((5, 5), (5, 5), [0, 0, 10, 10], [0, 0, 10, 5])
    official = M.score_stvg(*pair, M.HCSTVG_OFFICIAL)
    assert official["tiou"] == 1.0 and official["viou"] == pytest.approx(0.5) and official["gt_viou"] == pytest.approx(0.5)
    # STCAT: a one-frame ground truth [5, 5) is empty and can never be matched; gt_vIoU still counts its box.
    stcat = M.score_stvg(*pair, M.STCAT)
    assert stcat["tiou"] == 0.0 and stcat["viou"] == 0.0 and stcat["gt_viou"] == pytest.approx(0.5)


def test_stvg_a_span_without_boxes_has_official_tiou_0():
    # eval_hcvg.py counts the ground-truth frames where the prediction has a box: a bare span counts none.
    record, tube = _pair((2, 5), (2, 5), [0, 0, 10, 10], [0, 0, 10, 10])
    bare = {**tube, "frames": []}
    assert M.score_stvg(record, bare, M.HCSTVG_OFFICIAL)["tiou"] == 0.0
    assert M.score_stvg(record, bare, M.TUBEDETR)["tiou"] == 1.0


def test_stvg_empty_prediction_scores_zero_and_counts():
    s = M.score_stvg(*_pair((2, 5), None, [0, 0, 10, 10], None))
    assert s == {"tiou": 0.0, "viou": 0.0, "gt_viou": 0.0}
    summary = M.summarize_stvg([s, {"tiou": 1.0, "viou": 1.0, "gt_viou": 1.0}])
    assert summary["n"] == 2 and summary["m_tIoU"] == 0.5 and summary["m_vIoU"] == 0.5


def test_stvg_thresholds_are_strict():
    summary = M.summarize_stvg([{"tiou": 1.0, "viou": 0.5, "gt_viou": 0.5}, {"tiou": 1.0, "viou": 0.3, "gt_viou": 0.3}])
    assert summary["vIoU@0.5"] == 0.0
    assert summary["vIoU@0.3"] == 0.5


def test_empty_summaries_are_nan_not_a_crash():
    assert math.isnan(M.summarize_stvg([])["m_vIoU"])
    assert math.isnan(M.summarize_vtg([])["mIoU"])
    assert math.isnan(M.summarize_rec([])["Acc@0.5"])


def _tubedetr_issue3_viou(frame_ids, gt_sted, pred_sted, ious):
    """TubeDETR datasets/vidstg_eval.py before the fix of its issue 3: the union of frames used min_end where
    max_end belongs (exclusive ends, as TubeDETR's tube bounds are). `ious` maps frame -> box IoU."""
    max_start, min_start = max(gt_sted[0], pred_sted[0]), min(gt_sted[0], pred_sted[0])
    min_end = min(gt_sted[1], pred_sted[1])
    union_predgt = [f for f in frame_ids if min_start <= f < min_end]  # the bug: should be < max_end
    inter_predgt = {f for f in frame_ids if max_start <= f < min_end}
    return sum(ious[f] for f in inter_predgt) / max(len(union_predgt), 1)


def test_tubedetr_issue3_start_end_mixup_does_not_fool_us():
    # Perfect boxes on the 10 ground-truth frames 0..9, but the predicted span runs to frame 99.
    record, tube = _pair((0, 9), (0, 99), [0, 0, 10, 10], [0, 0, 10, 10], duration=10.0)
    buggy = _tubedetr_issue3_viou(range(100), (0, 10), (0, 100), {f: 1.0 if f < 10 else 0.0 for f in range(100)})
    assert buggy == pytest.approx(1.0)  # the published bug: a 10x too long tube scores a perfect vIoU
    for convention in M.CONVENTIONS.values():
        s = M.score_stvg(record, tube, convention)
        assert s["viou"] == pytest.approx(0.1 if convention.gt_includes_last else 0.09), convention.name
        assert s["tiou"] == pytest.approx(0.1 if convention.gt_includes_last else 0.09), convention.name


def _record(span=(1.0, 2.9), fps=10.0, duration=4.0, box=(10, 10, 30, 30)):
    first, last = round(span[0] * fps), round(span[1] * fps)
    return {
        "id": "r1",
        "span": list(span),
        "boxes": [{"t": f / fps, "xyxy": list(box)} for f in range(first, last + 1)],
        "fps": fps,
        "duration": duration,
    }


def test_score_stvg_exact_tube_is_perfect_except_under_stcat():
    record = _record()
    # The model saw frames every 0.5 s; its tube carries boxes only at those times.
    tube = {"span": [1.0, 2.9], "frames": [{"t": t, "box_xyxy": [10, 10, 30, 30]} for t in (1.0, 1.5, 2.0, 2.5)]}
    for convention in (M.TUBEDETR, M.HCSTVG_OFFICIAL):
        s = M.score_stvg(record, tube, convention)
        assert s["tiou"] == 1.0 and s["viou"] == pytest.approx(1.0), convention.name
    # STCAT's evaluator drops the ground truth's last frame only: 19 of 20 frames.
    s = M.score_stvg(record, tube, M.STCAT)
    assert s["tiou"] == pytest.approx(19 / 20) and s["viou"] == pytest.approx(19 / 20) and s["gt_viou"] == pytest.approx(1.0)


def test_score_stvg_ground_truth_frames_come_from_the_boxes():
    # Under the time contract the span ends at the last frame's time (2.9 s); a record whose span ends at
    # the end of that frame's interval (3.0 s) still has ground-truth frames 10..29, those of its boxes.
    tube = {"span": [1.0, 2.9], "frames": [{"t": t, "box_xyxy": [10, 10, 30, 30]} for t in (1.0, 1.5, 2.0, 2.5, 2.9)]}
    for span in ((1.0, 2.9), (1.0, 3.0)):
        record = {**_record(), "span": list(span)}
        assert M.gt_frame_span(record, 10.0) == (10, 29)
        s = M.score_stvg(record, tube)
        assert s["tiou"] == pytest.approx(1.0) and s["viou"] == pytest.approx(1.0)
    no_boxes = {**_record(), "span": [1.0, 3.0], "boxes": []}
    assert M.gt_frame_span(no_boxes, 10.0) == (10, 30)


def test_score_stvg_unparsed_tube_scores_zero():
    record = _record()
    for tube in (None, {"span": None, "frames": [], "status": "no time span found"}):
        assert M.score_stvg(record, tube)["viou"] == 0.0


def test_score_stvg_conventions_differ_on_the_last_frame():
    # Ground truth frames 10..29; prediction 10..29 but its box is only right on the last frame, 29.
    record = _record()
    tube = {"span": [2.9, 2.9], "frames": [{"t": 2.9, "box_xyxy": [10, 10, 30, 30]}]}
    official = M.score_stvg(record, tube, M.HCSTVG_OFFICIAL)
    assert official["tiou"] == pytest.approx(1 / 20)
    assert official["viou"] == pytest.approx(1 / 20)
    stcat = M.score_stvg(record, tube, M.STCAT)
    assert stcat["tiou"] == 0.0 and stcat["viou"] == 0.0


def test_grid_frame_ids_resampled_and_capped():
    assert M.grid_frame_ids(40, 10.0, M.HCSTVG_OFFICIAL).tolist() == list(range(40))
    assert M.grid_frame_ids(40, 10.0, M.TUBEDETR).tolist() == list(range(0, 40, 2))  # 0 .. 38 (frame 39 is never taken)
    assert M.grid_frame_ids(40, 10.0, M.TUBEDETR, segment=(5, 20)).tolist() == [5, 6, 8, 10, 12, 14, 16, 18, 20]
    assert M.grid_frame_ids(600, 30.0, M.TUBEDETR).shape[0] == 100
    capped = M.grid_frame_ids(3000, 30.0, M.TUBEDETR)  # 500 frames 0, 6, ... 2994, then frame_ids[j * 500 // 200]
    assert capped.tolist() == [6 * (j * 500 // 200) for j in range(200)]
    with pytest.raises(ValueError, match="eval_fps"):
        M.STVGConvention("bad", frames="resampled")


def test_boxes_on_grid_interpolates_predictions_inside_the_span():
    grid = np.array([0.5, 1.0, 1.5, 2.0, 2.5])
    out = M.boxes_on_grid([1.0, 2.0], [[0, 0, 10, 10], [10, 0, 20, 10]], grid, span=(1.0, 2.0))
    assert np.isnan(out[0]).all() and np.isnan(out[4]).all()
    assert out[2].tolist() == [5, 0, 15, 10]


def test_boxes_on_grid_takes_the_nearest_annotation_within_half_a_step():
    # Against brute force: the nearest of distinct (unsorted) annotation times, ties to the earlier one
    # (times in eighths of a second: exact in binary, so grid times often lie exactly half-way).
    rng = np.random.default_rng(1)
    for _ in range(50):
        times = rng.permutation(np.unique(rng.integers(0, 40, int(rng.integers(1, 12))))) / 8
        boxes = rng.uniform(0, 100, (times.size, 4))
        grid = np.arange(0, 6, rng.choice([0.125, 0.25, 0.5, 0.04]))
        out = M.boxes_on_grid(times, boxes, grid, interpolate=False)
        half_step = (grid[1] - grid[0]) / 2 + 1e-6
        for g, row in zip(grid, out):
            dist = np.abs(times - g)
            best = dist == dist.min()
            nearest = np.flatnonzero(best)[np.argmin(times[best])]
            expected = boxes[nearest] if dist[nearest] <= half_step else [math.nan] * 4
            np.testing.assert_array_equal(row, expected)


def _stvg_edge_cases():
    """(record, tube) pairs on a 4 s, 10 fps video with ground truth on frames 10..29 (boxes [10, 10, 30, 30])."""
    record = _record()
    gaps = {**record, "boxes": [b for i, b in enumerate(record["boxes"]) if i % 3]}
    off_frame = {**record, "boxes": [{**b, "t": b["t"] + 0.03} for b in record["boxes"]]}
    unsorted = {**record, "boxes": record["boxes"][::-1]}
    single = {**record, "boxes": record["boxes"][5:6]}
    no_boxes = {**record, "boxes": []}
    beyond = {**record, "duration": 2.0}  # ground truth past the video's end
    # Annotations half-way between frames (4 fps, exact in binary): each frame is as near to two of them.
    ties = {**record, "fps": 4.0, "boxes": [{"t": (f + 0.5) / 4, "xyxy": [10 + f, 10, 30 + f, 30]} for f in range(3, 12)]}

    def tube(span, times, box=(12, 10, 32, 30)):
        return {"span": span, "frames": [{"t": t, "box_xyxy": list(box)} for t in times]}

    tubes = [
        None,  # no prediction
        {"span": None, "frames": [], "status": "no time span found"},
        tube([1.0, 2.9], []),  # a span without boxes
        tube([3.2, 3.9], [3.2, 3.5]),  # empty intersection with the ground truth
        tube([0.0, 0.5], [0.2, 0.4]),  # before the ground truth
        tube([0.5, 3.9], [0.0, 1.0, 2.0, 3.0, 4.5]),  # around it, boxes outside its span
        tube([2.0, 1.0], [1.0, 2.0]),  # reversed span
        tube([-1.0, 9.0], [2.5, 1.5, 0.5]),  # beyond the video, frames unsorted
        tube([2.9, 2.9], [2.9]),  # one frame, the last of the ground truth
        tube([1.0, 2.9], [1.0, 2.0], box=(10, math.nan, 30, 30)),  # a box that is not finite
    ]
    return [(r, t) for r in (record, gaps, off_frame, unsorted, single, no_boxes, beyond, ties) for t in tubes]


def _random_stvg_pair(rng):
    """A random (record, tube): videos of 5-30 fps and 4-70 s, ground truth with gaps, sparse or off-frame
    times, in any order; predictions missing, before, after, around or beyond it."""
    fps = float(rng.choice([25.0, 30.0, 29.97, 10.0, 5.0]))
    duration = float(rng.choice([4.0, 20.0, 70.0]))
    total = int(round(duration * fps))
    start = int(rng.integers(-5, total))
    frames = np.arange(start, start + int(rng.integers(0, total // 2 + 2)))
    kind = rng.integers(0, 5)
    if kind == 1:
        frames = frames[rng.random(frames.size) > 0.3]  # gaps
    elif kind == 2:
        frames = frames[:: int(rng.integers(2, 7))]  # annotated at a lower rate
    times = frames / fps + (rng.uniform(-0.6, 0.6, frames.size) / fps if kind == 3 else 0.0)
    x, y = rng.uniform(0, 300), rng.uniform(0, 200)
    gt = [{"t": float(t), "xyxy": [x + t, y, x + t + rng.uniform(40, 80), y + rng.uniform(40, 80)]} for t in times]
    if rng.random() < 0.2:
        rng.shuffle(gt)
    record = {"id": "r", "span": [start / fps, (start + 9) / fps], "boxes": gt, "fps": fps, "duration": duration}
    if rng.random() < 0.1:
        return record, None
    near = rng.random() < 0.6 and len(times)
    s = float(times.min() + rng.uniform(-2, 2) if near else rng.uniform(-3, duration + 3))
    e = float(times.max() + rng.uniform(-2, 2) if near else s + rng.uniform(-1, duration / 2))
    pred_times = np.sort(rng.uniform(s - 2, e + 2, int(rng.integers(0, 20))))
    return record, {"span": [s, e], "frames": [{"t": float(t), "box_xyxy": [x + t + 5, y + 3, x + t + 65, y + 50]} for t in pred_times]}


def test_score_stvg_many_gives_exactly_the_per_query_scores():
    # Batched, prepared once or not, in any batch size: the same scores as one query at a time, bit for
    # bit (the values themselves are checked against the published evaluators in test_eval_ports).
    rng = np.random.default_rng(0)
    pairs = _stvg_edge_cases() + [_random_stvg_pair(rng) for _ in range(300)]
    records, tubes = [r for r, _ in pairs], [t for _, t in pairs]
    prepared = M.prepare_stvg_gt(records, batch=29)
    for convention in M.CONVENTIONS.values():
        expected = [M.score_stvg_many([pair], convention, batch=1)[0] for pair in pairs]
        assert sum(s["viou"] > 0 for s in expected) > 100 and sum(s["viou"] == 0 for s in expected) > 50
        assert M.score_stvg_many(pairs, convention) == expected
        assert M.score_stvg_many(list(zip(prepared, tubes)), convention, batch=37) == expected
        assert [M.score_stvg(r, t, convention) for r, t in pairs[::10]] == expected[::10]
    assert M.score_stvg_many([]) == [] and M.prepare_stvg_gt([]) == []


def test_vtg_hand_worked():
    ious = M.vtg_ious([(0, 10), (0, 10), (0, 5), None, (3, 3)], [(5, 15), (0, 20), (5, 10), (0, 4), (0, 6)])
    assert ious.tolist() == pytest.approx([1 / 3, 0.5, 0.0, 0.0, 0.0])  # touching, unparsable, single point
    summary = M.summarize_vtg(ious)
    assert summary["R@1,IoU=0.3"] == pytest.approx(2 / 5)
    assert summary["R@1,IoU=0.5"] == pytest.approx(1 / 5)  # IoU exactly 0.5 counts (>=)
    assert summary["R@1,IoU=0.7"] == 0.0
    assert summary["mIoU"] == pytest.approx((1 / 3 + 0.5) / 5)
    assert summary["n"] == 5


def test_didemo_best_three_annotators():
    annotators = [(1, 4), (1, 4), (0, 0), (1, 4)]
    hit = M.didemo_scores([(1, 4)], [annotators])
    assert hit["R@1"] == 1.0 and hit["mIoU"] == pytest.approx(1.0)
    # Two of four annotators agree: the mean of the best 3 ranks is above 1, no hit (the official rule).
    two = M.didemo_scores([(1, 4)], [[(1, 4), (1, 4), (0, 0), (1, 3)]])
    assert two["R@1"] == 0.0 and two["mIoU"] == pytest.approx((1 + 1 + 0.75) / 3)
    # Fewer than 3 annotators: all of them must agree.
    assert M.didemo_scores([(1, 4), (1, 4)], [[(1, 4), (1, 4)], [(1, 4), (2, 2)]])["R@1"] == 0.5
    miss = M.didemo_scores([(2, 2), None], [annotators, annotators])
    assert miss["R@1"] == 0.0
    assert miss["mIoU"] == pytest.approx(((1 / 4 + 1 / 4 + 1 / 4) / 3 + 0) / 2)
    assert M.didemo_chunks((5.0, 25.0)) == (1, 4)
    assert M.didemo_chunks((0.0, 30.0)) == (0, 5)


def test_rec_acc_at_half_is_inclusive():
    ious = M.rec_ious([[0, 0, 10, 10], [0, 0, 10, 10], None], [[0, 0, 10, 20], [0, 0, 10, 21], [0, 0, 5, 5]])
    assert ious[0] == pytest.approx(0.5) and ious[1] < 0.5 and ious[2] == 0.0
    summary = M.summarize_rec(ious)
    assert summary["Acc@0.5"] == pytest.approx(1 / 3) and summary["n"] == 3
