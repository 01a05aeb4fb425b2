"""transformers host: records -> items -> batches, mixed video/image batches, the boxes-as-text ablation."""

import shutil

import numpy as np
import pytest
import torch

from llava_st.core.batch import GROUNDING_BOX_MASK, GROUNDING_TEXT_INDEX, GROUNDING_TEXT_MASK
from llava_st.core.boxtext import format_boxes_text
from llava_st.core.config import STConfig
from llava_st.core.tube import text_tube
from llava_st.data.templates import REC_ANSWER
from llava_st.hosts.hf.data import IGNORE_INDEX, STCollator, STDataset
from llava_st.testing.hf import build_tiny_st


@pytest.fixture(scope="module")
def media(moving_box_video, tmp_path_factory):
    """(data_root, stvg record, rec record): the moving-box video and a 48 x 80 image beside it."""
    from PIL import Image

    path, boxes = moving_box_video
    root = tmp_path_factory.mktemp("media")
    shutil.copy(path, root / "box.mp4")  # a copy: a link out of the data root is refused (data.paths)
    Image.fromarray(np.full((48, 80, 3), 120, dtype=np.uint8)).save(root / "img.png")
    stvg = {
        "id": "v1", "task": "stvg", "video": "box.mp4", "caption": "the red box", "span": [1.0, 2.9],
        "boxes": [{"t": t / 10, "xyxy": boxes[t].tolist()} for t in range(10, 30)],
        "width": 96, "height": 64, "duration": 4.0, "fps": 10.0,
    }
    rec = {
        "id": "i1", "task": "rec", "image": "img.png", "caption": "the grey square",
        "boxes": [{"t": 0.0, "xyxy": [8, 4, 40, 36]}], "width": 80, "height": 48,
    }
    return root, stvg, rec


def _answer(processor, item):
    return processor.tokenizer.decode([t for t in item["labels"] if t != IGNORE_INDEX])


def test_items_carry_span_answer_targets_and_description_positions(qwen_tokenizer, media):
    root, stvg, rec = media
    _, proc = build_tiny_st(qwen_tokenizer, STConfig(num_queries=8))
    video_item, image_item = STDataset([stvg, rec], root, proc, frames=4)[0], STDataset([rec], root, proc, frames=4)[0]
    assert _answer(proc, video_item) == "From 1.3s to 2.6s.<|im_end|>"  # span snapped to frames 0, 1.3, 2.6, 3.9 s
    assert video_item[GROUNDING_BOX_MASK].tolist() == [False, True, True, False]
    desc = proc.tokenizer.decode([video_item["input_ids"][i] for i in video_item[GROUNDING_TEXT_INDEX]])
    assert desc.strip() == "the red box"
    assert _answer(proc, image_item) == REC_ANSWER + "<|im_end|>"
    assert image_item[GROUNDING_BOX_MASK].tolist() == [True]


def test_mixed_video_and_image_batch_trains(qwen_tokenizer, media):
    root, stvg, rec = media
    model, proc = build_tiny_st(qwen_tokenizer, STConfig(num_queries=8))
    dataset = STDataset([stvg, rec], root, proc, frames=4)
    batch = STCollator(proc.tokenizer.pad_token_id)([dataset[0], dataset[1]])
    assert batch["pixel_values_videos"].shape[:2] == (1, 4) and batch["pixel_values"].shape[0] == 1
    assert batch[GROUNDING_TEXT_MASK].any(-1).all()
    out = model.train()(**batch)
    assert out.pred_boxes.shape == (2, 4, 4)
    assert out.frame_mask.tolist() == [[True] * 4, [True, False, False, False]]
    assert torch.isfinite(out.loss) and out.loss_l1 > 0
    out.loss.backward()
    assert model.space_decoder.head.layers[0].weight.grad.abs().sum() > 0


def test_boxes_as_text_ablation_answers_and_tubes(qwen_tokenizer, media):
    root, stvg, _ = media
    _, proc = build_tiny_st(qwen_tokenizer, STConfig(num_queries=8, query_mode="none"))
    item = STDataset([stvg], root, proc, frames=4)[0]
    answer = _answer(proc, item)
    assert answer.startswith("From 1.3s to 2.6s. 1.3s: [") and answer.count("[") == 2
    raw = format_boxes_text(1.3, 2.6, [(1.3, [0.1, 0.2, 0.3, 0.4]), (2.6, [0.5, 0.2, 0.7, 0.4])])
    video = {"path": "v.mp4", "width": 100, "height": 50, "duration": 4.0, "fps": 10.0}
    tube = text_tube("q", raw, [0.0, 1.3, 2.6, 3.9], video)
    assert tube["status"] == "ok" and tube["span"] == [1.3, 2.6]
    assert [f["box_xyxy"] for f in tube["frames"]] == [[10.0, 10.0, 30.0, 20.0], [50.0, 10.0, 70.0, 20.0]]


def test_videos_of_different_lengths_in_one_batch_are_refused(qwen_tokenizer, media):
    root, stvg, _ = media
    _, proc = build_tiny_st(qwen_tokenizer, STConfig(num_queries=8))
    a = STDataset([stvg], root, proc, frames=4)[0]
    b = STDataset([stvg], root, proc, frames=3)[0]
    with pytest.raises(ValueError, match="same number of frames"):
        STCollator(proc.tokenizer.pad_token_id)([a, b])


def test_media_paths_outside_the_data_root_are_refused(qwen_tokenizer, media, tmp_path):
    """../, absolute paths and links leading out of the data root never reach the reader (data.paths)."""
    from llava_st.hosts.hf.data import RecordError

    root, stvg, rec = media
    outside = tmp_path / "outside.mp4"
    shutil.copy(root / "box.mp4", outside)
    jail = tmp_path / "root"
    jail.mkdir()
    shutil.copy(root / "box.mp4", jail / "box.mp4")
    shutil.copy(root / "img.png", jail / "img.png")
    (jail / "link.mp4").symlink_to(outside)
    (jail / "inside_link.mp4").symlink_to(jail / "box.mp4")
    _, proc = build_tiny_st(qwen_tokenizer, STConfig(num_queries=8))
    dataset = STDataset([stvg], jail, proc, frames=4)
    for key, path, words in [
        ("video", "../outside.mp4", "escapes the data root"),
        ("video", str(outside), "relative to the data root"),
        ("video", "link.mp4", "through a link"),
        ("image", "../root/../outside.mp4", "escapes the data root"),
        ("video", "a\x00.mp4", "NUL byte"),
    ]:
        record = {**(stvg if key == "video" else rec), key: path}
        with pytest.raises(RecordError, match=words) as info:
            dataset.item(record)
        assert f"record {record['id']}: field '{key}'" in str(info.value)
    assert dataset.item({**stvg, "video": "inside_link.mp4"})[GROUNDING_BOX_MASK].tolist() == [False, True, True, False]
    # In a dataset, the escaping record is skipped for a good one.
    mixed = STDataset([{**stvg, "id": "out", "video": "link.mp4"}, stvg], jail, proc, frames=4)
    assert mixed[0][GROUNDING_BOX_MASK].tolist() == [False, True, True, False]


def test_bad_records_are_dropped_at_load_counted_by_kind_and_replaced_at_random(qwen_tokenizer, media, tmp_path):
    """Issue 15: both hosts drop and count bad records by reason; nothing raises out of __getitem__; a
    sample that fails when read is replaced by a random (seeded) other one, not its neighbour."""
    root, stvg, rec = media
    _, proc = build_tiny_st(qwen_tokenizer, STConfig(num_queries=8))
    no_boxes = {k: v for k, v in stvg.items() if k != "boxes"}
    records = [
        "not a record",
        {**stvg, "id": "string-turn", "task": "qa", "conversations": ["<image>\nhello", "hi"]},
        {**stvg, "id": "int-value", "task": "qa", "conversations": [{"from": "human", "value": 5}, {"from": "gpt", "value": "x"}]},
        {**stvg, "id": "reversed", "span": [2.9, 1.0]},
        {**no_boxes, "id": "no-boxes"},
        {**stvg, "id": "dotdot", "video": "../box.mp4"},
        {**stvg, "id": "missing", "video": "missing.mp4"},
        *[{**stvg, "id": f"good-{n}"} for n in range(6)],
    ]
    dataset = STDataset(records, root, proc, frames=4, seed=3)
    assert dataset.bad.counts == {"invalid record": 5, "path outside data root": 1}
    reasons = {e["id"]: e["reason"] for e in dataset.bad.entries}
    assert "field=span" in reasons["reversed"] and "field=boxes" in reasons["no-boxes"] and "field=record" in reasons["0"]
    assert "conversations[0]" in reasons["string-turn"] and "conversations[0].value" in reasons["int-value"]
    assert len(dataset) == 7 and dataset.records[0]["id"] == "missing"

    def replacements(seed):
        ds = STDataset(records, root, proc, frames=4, seed=seed)
        used = []
        item = ds.item
        ds.item = lambda record, rng=None: used.append(record["id"]) or item(record, rng)
        ds[0]
        assert ds.bad.counts["missing file"] == 1
        return used

    picks = [replacements(seed) for seed in range(8)]
    assert all(p[0] == "missing" and p[1].startswith("good-") for p in picks)
    assert replacements(3) == picks[3]  # seeded
    assert len({p[1] for p in picks}) > 1  # random, not always the next record
    log = tmp_path / "bad.jsonl"
    dataset.bad.attach(str(log))
    from llava_st.data.bad_samples import summarize

    assert summarize(str(log)) == dataset.bad.counts
