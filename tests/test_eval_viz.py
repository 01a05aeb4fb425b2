"""`llava-st viz`: tubes drawn onto a real mp4 where they belong, per-frame IoU plotted to a PNG."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from llava_st.cli import main
from llava_st.data.paths import MediaPathError
from llava_st.eval import viz


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return np.stack(out)


def _record_and_tube(moving_box_video):
    path, boxes = moving_box_video  # 40 frames at 10 fps, box on frames 10..29
    record = {
        "id": "clip/1",
        "video": path,
        "caption": "the red box",
        "span": [1.0, 2.9],
        "boxes": [{"t": f / 10, "xyxy": boxes[f].tolist()} for f in range(10, 30)],
        "fps": 10.0,
        "duration": 4.0,
        "width": 96,
        "height": 64,
    }
    # The prediction covers 2.0-3.5 s, sampled every 0.5 s, 4 px to the right of the truth where it exists.
    tube = {"span": [2.0, 3.5], "status": "ok", "frames": []}
    for t in (2.0, 2.5, 3.0, 3.5):
        f = min(int(round(t * 10)), 29)
        tube["frames"].append({"t": t, "box_xyxy": (boxes[f] + [4, 0, 4, 0]).tolist()})
    return record, tube


def test_per_frame_iou_is_zero_where_one_side_is_missing(moving_box_video):
    record, tube = _record_and_tube(moving_box_video)
    times = np.arange(40) / 10
    iou = viz.per_frame_iou(viz.tube_boxes(tube, times), viz.gt_boxes(record, times))
    assert np.isnan(iou[:10]).all()  # neither
    assert (iou[10:20] == 0).all()  # ground truth only
    assert (iou[20:30] > 0.5).all() and (iou[20:30] < 1).all()  # both, shifted by 4 px
    assert (iou[30:36] == 0).all() and np.isnan(iou[36:]).all()  # prediction only, then neither


def test_draw_sample_writes_video_and_iou_plot(moving_box_video, tmp_path):
    record, tube = _record_and_tube(moving_box_video)
    with pytest.raises(MediaPathError, match="id=clip/1 field=video: .* relative to the data root"):
        viz.draw_sample(record, tube, "/", tmp_path)  # the data-root rule: never an absolute path
    root = Path(record["video"]).parent
    record = {**record, "video": Path(record["video"]).name}
    mp4, png = viz.draw_sample(record, tube, root, tmp_path)
    assert mp4.name == "clip_1.mp4" and png.name == "clip_1.iou.png"
    frames = _frames(mp4)
    assert frames.shape == (40, 64, 96, 3)
    x0, y0, x1, y1 = (int(round(v)) for v in record["boxes"][5]["xyxy"])  # frame 15: ground truth only
    top_edge = frames[15, y0, x0 + 2 : x1 - 2].astype(int)
    assert (top_edge[:, 2] > 150).mean() > 0.8 and (top_edge[:, 1] < 110).mean() > 0.8  # red (BGR)
    px0, py0, px1, _ = (int(round(v)) for v in tube["frames"][3]["box_xyxy"])  # frame 35: prediction only
    pred_edge = frames[35, py0, px0 + 2 : px1 - 2].astype(int)
    assert (pred_edge[:, 1] > 150).mean() > 0.8 and (pred_edge[:, 2] < 130).mean() > 0.8  # green
    assert abs(int(frames[5, 32, 48].astype(int).sum()) - 3 * 110) < 60  # untouched frame stays grey
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 300


def test_viz_cli_video_and_image(moving_box_video, tmp_path):
    record, tube = _record_and_tube(moving_box_video)
    (tmp_path / "tubes.json").write_text(json.dumps([tube]))
    (tmp_path / "record.json").write_text(json.dumps(record))
    out = tmp_path / "drawn.mp4"
    code = main(["viz", "--video", record["video"], "--tubes", str(tmp_path / "tubes.json"), "--record", str(tmp_path / "record.json"),
                 "--out", str(out), "--iou-png", str(tmp_path / "iou.png")])
    assert code == 0 and _frames(out).shape[0] == 40 and cv2.imread(str(tmp_path / "iou.png")) is not None

    image = np.full((48, 64, 3), 100, np.uint8)
    cv2.imwrite(str(tmp_path / "img.png"), image)
    rec_tube = {"span": [0.0, 0.0], "status": "ok", "frames": [{"t": 0.0, "box_xyxy": [10, 10, 40, 30]}]}
    (tmp_path / "row.json").write_text(json.dumps({"id": "x", "tube": rec_tube}))
    assert main(["viz", "--video", str(tmp_path / "img.png"), "--tubes", str(tmp_path / "row.json"),
                 "--out", str(tmp_path / "img.viz.png")]) == 0
    drawn = cv2.imread(str(tmp_path / "img.viz.png")).astype(int)
    assert drawn[10, 25, 1] > 150 and drawn[20, 25, 1] == 100  # green edge, untouched inside


def test_viz_cli_rejects_iou_plot_without_ground_truth(moving_box_video, tmp_path):
    record, tube = _record_and_tube(moving_box_video)
    (tmp_path / "tubes.json").write_text(json.dumps(tube))
    with pytest.raises(SystemExit):
        main(["viz", "--video", record["video"], "--tubes", str(tmp_path / "tubes.json"), "--out", str(tmp_path / "o.mp4"),
              "--iou-png", str(tmp_path / "i.png")])
