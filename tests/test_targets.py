import numpy as np
import pytest
import torch

from llava_st.core.boxtext import format_boxes_text, parse_boxes_text
from llava_st.data.targets import frame_targets, image_targets
from llava_st.data.templates import instruction


def _record():
    # 10 fps, boxes annotated on every frame from 2.0 s to 4.0 s, frame 200x100
    boxes = [{"t": round(2.0 + i / 10, 2), "xyxy": [10.0 + i, 20.0, 50.0 + i, 60.0]} for i in range(21)]
    return {"id": "r1", "task": "stvg", "span": [2.03, 3.96], "boxes": boxes, "width": 200, "height": 100, "fps": 10.0, "duration": 8.0}


def test_frame_targets_snap_and_select():
    times = np.arange(8) * 1.0  # one sampled frame per second
    t = frame_targets(_record(), times)
    assert t.span == (2.0, 4.0)
    assert t.mask.tolist() == [False, False, True, True, True, False, False, False]
    # frame at 3.0 s takes the box annotated at 3.0 s: xyxy (20, 20, 60, 60) on 200x100
    assert torch.allclose(t.boxes_cxcywh[3], torch.tensor([0.2, 0.4, 0.2, 0.4]))
    assert (t.boxes_cxcywh[~t.mask] == 0).all()


def test_frames_without_nearby_box_are_masked():
    rec = _record()
    rec["boxes"] = [b for b in rec["boxes"] if b["t"] < 2.5]  # annotation stops at 2.4 s
    t = frame_targets(rec, np.arange(8) * 1.0)
    assert t.mask.tolist() == [False, False, True, False, False, False, False, False]


def test_vtg_record_has_no_box_targets():
    t = frame_targets({"span": [1.0, 2.0], "width": 10, "height": 10}, [0.0, 1.0, 2.0])
    assert not t.mask.any() and t.span == (1.0, 2.0)


def test_image_targets():
    t = image_targets({"boxes": [{"t": 0.0, "xyxy": [0, 0, 50, 100]}], "width": 100, "height": 100})
    assert t.mask.tolist() == [True]
    assert torch.allclose(t.boxes_cxcywh[0], torch.tensor([0.25, 0.5, 0.5, 1.0]))


def test_boxes_as_text_round_trip():
    text = format_boxes_text(1.0, 2.0, [(1.0, [0.1, 0.2, 0.3, 0.4]), (2.0, [0.5, 0.5, 0.9, 1.0])])
    assert text == "From 1.0s to 2.0s. 1.0s: [0.10, 0.20, 0.30, 0.40]; 2.0s: [0.50, 0.50, 0.90, 1.00]."
    span, boxes = parse_boxes_text(text)
    assert span.span == (1.0, 2.0)
    assert boxes == {1.0: [0.1, 0.2, 0.3, 0.4], 2.0: [0.5, 0.5, 0.9, 1.0]}
    span, boxes = parse_boxes_text("From 1s to 2s. 1.0s: [0.1, oops]; 2.0s: [0.5, 0.5, 0.9, 1.0]")
    assert list(boxes) == [2.0]


def test_instruction_templates():
    assert '"the man in red"' in instruction("stvg", "the man in red.")
    with pytest.raises(ValueError, match="empty"):
        instruction("rec", "   ")
    with pytest.raises(ValueError, match="no instruction templates"):
        instruction("qa", "x")
