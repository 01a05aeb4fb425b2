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


def test_a_parsed_span_snaps_to_the_sampled_frames():
    tube = assemble_tube("q", "From 1.2s to 1.4s.", [0.0, 1.0, 2.0], torch.rand(3, 4), VIDEO)
    assert tube["span"] == [1.2, 1.4] and [f["t"] for f in tube["frames"]] == [1.0] and tube["status"] == "ok"
    # A given span is used as it is.
    given = assemble_tube("q", "", [0.0, 1.0, 2.0], torch.rand(3, 4), VIDEO, span=(1.2, 1.4))
    assert given["span"] == [1.2, 1.4] and given["frames"] == [] and "contains no sampled frame" in given["status"]


def test_a_trained_answer_gives_back_the_trained_frames():
    # Training snaps the span to sampled frames whose times are not multiples of 0.1 s and the answer rounds
    # them to 0.1 s; the tube read back from that answer has exactly the frames training marked.
    from llava_st.core.timespan import format_span, snap_span, span_frame_mask

    times = [round(k * 20 / 16 + 0.37, 4) for k in range(16)]  # 1.25 s apart, off the 0.1-s grid
    for start, end in ((0.0, 20.0), (3.3, 7.9), (5.0, 5.0), (12.61, 19.2)):
        taught = snap_span(start, end, times)
        tube = assemble_tube("q", format_span(*taught), times, torch.rand(16, 4), {**VIDEO, "duration": 20.0})
        assert tube["span"] == [round(t, 1) for t in taught]
        assert [f["t"] for f in tube["frames"]] == [t for t, m in zip(times, span_frame_mask(*taught, times)) if m]


def test_csv_export():
    tube = assemble_tube("q", "From 0s to 1s.", [0.0, 0.5, 1.0, 1.5], torch.full((4, 4), 0.5), VIDEO)
    rows = list(csv.reader(io.StringIO(tubes_to_csv([tube], ["q7"]))))
    assert rows[0] == ["query_id", "time_ms", "x0", "y0", "x1", "y1"]
    assert [r[1] for r in rows[1:]] == ["0", "500", "1000"]
    assert rows[1][2:] == ["50.00", "25.00", "150.00", "75.00"]
