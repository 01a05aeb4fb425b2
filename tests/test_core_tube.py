import csv
import io
import json

import numpy as np
import torch

from llava_st.core import assemble_tube, tubes_to_csv, tubes_to_json

VIDEO = {"path": "v.mp4", "width": 200, "height": 100, "duration": 4.0, "fps": 10.0}


def test_tube_keeps_frames_inside_span_in_pixels():
    times = np.array([0.0, 1.0, 2.0, 3.0])
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 4)
    boxes[2] = torch.tensor([0.25, 0.5, 0.5, 1.0])
    tube = assemble_tube("the red box", "From 1.0s to 2.0s.", times, boxes, VIDEO)
    assert tube["status"] == "ok"
    assert tube["span"] == [1.0, 2.0]
    assert [f["t"] for f in tube["frames"]] == [1.0, 2.0]
    assert tube["frames"][1]["box_xyxy"] == [0.0, 0.0, 100.0, 100.0]
    assert tube["frames"][1]["box_norm"] == [0.0, 0.0, 0.5, 1.0]
    assert tube["frames"][0]["box_xyxy"] == [80.0, 40.0, 120.0, 60.0]
    json.loads(tubes_to_json([tube]))


def test_unparsable_answer_gives_status():
    tube = assemble_tube("q", "I cannot tell.", [0.0, 1.0], torch.rand(2, 4), VIDEO)
    assert tube["span"] is None and tube["frames"] == []
    assert "no time span" in tube["status"]


def test_span_between_sampled_frames():
    tube = assemble_tube("q", "From 1.2s to 1.4s.", [0.0, 1.0, 2.0], torch.rand(3, 4), VIDEO)
    assert tube["span"] == [1.2, 1.4] and tube["frames"] == []
    assert "contains no sampled frame" in tube["status"]


def test_csv_export():
    tube = assemble_tube("q", "From 0s to 1s.", [0.0, 0.5, 1.0, 1.5], torch.full((4, 4), 0.5), VIDEO)
    rows = list(csv.reader(io.StringIO(tubes_to_csv([tube], ["q7"]))))
    assert rows[0] == ["query_id", "time_ms", "x0", "y0", "x1", "y1"]
    assert [r[1] for r in rows[1:]] == ["0", "500", "1000"]
    assert rows[1][2:] == ["50.00", "25.00", "150.00", "75.00"]
