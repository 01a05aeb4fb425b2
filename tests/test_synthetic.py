"""The synthetic STG benchmark: exact boxes, determinism, captions that single out the target."""

import json

import numpy as np
import pytest

from llava_st.core.timespan import parse_span
from llava_st.data.synthetic import (
    COLORS,
    MARGIN,
    SyntheticConfig,
    make_rec,
    make_stvg,
    side_pixels,
    stamp,
    write_split,
)
from llava_st.data.targets import frame_targets
from llava_st.data.video import read_video, sample_frames

CONFIG = SyntheticConfig()


def _colour_pixels_near(frame, box, colour):
    """Pixels of exactly `colour` inside `box` grown by MARGIN (no other shape reaches that region)."""
    x0, y0, x1, y1 = [int(v) for v in box]
    H, W, _ = frame.shape
    region = frame[max(0, y0 - MARGIN) : y1 + MARGIN, max(0, x0 - MARGIN) : x1 + MARGIN]
    ys, xs = np.nonzero((region == np.array(colour, dtype=np.uint8)).all(-1))
    return ys + max(0, y0 - MARGIN), xs + max(0, x0 - MARGIN)


@pytest.mark.parametrize("shape", ["square", "circle", "triangle"])
@pytest.mark.parametrize("side", [3, 10, 17])
def test_stamp_fills_its_whole_square(shape, side):
    mask = stamp(shape, side)
    assert mask.shape == (side, side)
    assert mask.any(0).all() and mask.any(1).all()


@pytest.mark.parametrize("index", range(8))
def test_boxes_are_the_tight_bounds_of_the_drawn_target(index):
    frames, record, scene = make_stvg(index, seed=3, config=CONFIG)
    target = scene[0]
    colour = COLORS[target.color]
    drawn = stamp(target.shape, side_pixels(target.size, CONFIG)).sum()
    boxes = {round(b["t"] * CONFIG.fps): b["xyxy"] for b in record["boxes"]}
    assert sorted(boxes) == list(range(target.first, target.last + 1))
    for t, box in boxes.items():
        ys, xs = _colour_pixels_near(frames[t], box, colour)
        assert len(ys) == drawn
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == box
    # outside the span the target's pixels are gone: its first box region shows no full stamp
    for t in set(range(CONFIG.num_frames)) - set(boxes):
        ys, _ = _colour_pixels_near(frames[t], boxes[target.first], colour)
        assert len(ys) < drawn


def test_span_and_answer_agree_with_the_boxes():
    for index in range(10):
        _, record, scene = make_stvg(index, seed=0, config=CONFIG)
        assert record["span"] == [record["boxes"][0]["t"], record["boxes"][-1]["t"]]
        assert record["duration"] == CONFIG.num_frames / CONFIG.fps
        sample = sample_frames(CONFIG.num_frames, CONFIG.fps, frames_upbound=CONFIG.frames)
        parsed = parse_span(record["conversations"][1]["value"])
        assert parsed.ok and parsed.span[0] in sample.times and parsed.span[1] in sample.times
        targets = frame_targets(record, sample.times)
        assert targets.mask.sum() >= 1
        assert record["conversations"][0]["value"].startswith("<image>\n")
        assert record["caption"].rstrip(".?") in record["conversations"][0]["value"]


def test_captions_single_out_the_target_in_both_forms():
    forms = set()
    for index in range(40):
        _, record, scene = make_stvg(index, seed=1, config=CONFIG)
        target, distractors = scene[0], scene[1:]
        words = record["caption"].lower()
        for attr in (target.size, target.color, target.shape, target.motion):
            assert attr in words
        assert 1 <= len(distractors) <= CONFIG.max_distractors
        for other in distractors:
            assert (other.color, other.shape) != (target.color, target.shape)
            assert other.first == 0 and other.last == CONFIG.num_frames - 1
        forms.add(record["sentence_type"])
        assert record["caption"].endswith("?") == (record["sentence_type"] == "interrogative")
    assert forms == {"declarative", "interrogative"}


def test_samples_are_deterministic_by_seed_and_index():
    a_frames, a_record, _ = make_stvg(5, seed=7, config=CONFIG)
    b_frames, b_record, _ = make_stvg(5, seed=7, config=CONFIG)
    assert np.array_equal(a_frames, b_frames) and a_record == b_record
    c_frames, c_record, _ = make_stvg(5, seed=8, config=CONFIG)
    assert not np.array_equal(a_frames, c_frames)
    assert c_record["id"] != a_record["id"]


def test_rec_sample_has_one_exact_box_at_time_zero():
    image, record, scene = make_rec(2, seed=0, config=CONFIG)
    target = scene[0]
    assert record["task"] == "rec" and "span" not in record and image.shape == (64, 64, 3)
    (box,) = record["boxes"]
    assert box["t"] == 0.0
    ys, xs = _colour_pixels_near(image, box["xyxy"], COLORS[target.color])
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == box["xyxy"]
    assert record["caption"] == f"the {target.size} {target.color} {target.shape}"


def test_written_split_decodes_and_is_reused(tmp_path):
    records = write_split(tmp_path, 3, seed=2, config=CONFIG, split="val", progress=False)
    assert json.loads((tmp_path / "val.json").read_text()) == records
    first = records[0]
    frames, sample = read_video(str(tmp_path / first["video"]), frames_upbound=CONFIG.num_frames, video_fps=CONFIG.fps)
    assert frames.shape == (CONFIG.num_frames, CONFIG.height, CONFIG.width, 3)
    raw, _, scene = make_stvg(0, seed=2, config=CONFIG, split="val")
    box = first["boxes"][len(first["boxes"]) // 2]
    t = round(box["t"] * CONFIG.fps)
    x0, y0, x1, y1 = [int(v) for v in box["xyxy"]]
    centre = frames[t, (y0 + y1) // 2, (x0 + x1) // 2].astype(int)
    assert np.abs(centre - np.array(COLORS[scene[0].color])).max() < 60  # lossy mp4, still the colour
    mtime = (tmp_path / first["video"]).stat().st_mtime_ns
    again = write_split(tmp_path, 3, seed=2, config=CONFIG, split="val", progress=False)
    assert again == records and (tmp_path / first["video"]).stat().st_mtime_ns == mtime
    longer = write_split(tmp_path, 4, seed=2, config=CONFIG, split="val", progress=False)
    assert longer[:3] == records


def test_rec_split_writes_images(tmp_path):
    import cv2

    records = write_split(tmp_path, 2, seed=0, config=CONFIG, split="train", task="rec", progress=False)
    image = cv2.imread(str(tmp_path / records[0]["image"]))[..., ::-1]
    expected, _, _ = make_rec(0, seed=0, config=CONFIG, split="train")
    assert np.array_equal(image, expected)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="min_span_frames"):
        SyntheticConfig(min_span_frames=0)
    with pytest.raises(ValueError, match="task"):
        write_split("/tmp/unused", 1, 0, CONFIG, "x", task="qa")


def test_every_caption_is_found_among_its_prompt_tokens(qwen_tokenizer):
    """The space decoder reads the description's tokens: declarative captions end with a period the
    instruction drops, questions keep their question mark; both must be located."""
    from llava_st.core.layout import description_token_positions

    for index in range(12):
        _, record, _ = make_stvg(index, seed=4, config=CONFIG)
        ids = qwen_tokenizer(record["conversations"][0]["value"], add_special_tokens=False)["input_ids"]
        positions = description_token_positions(ids, qwen_tokenizer, record["caption"])
        found = qwen_tokenizer.decode([ids[p] for p in positions]).strip()
        assert found == record["caption"].rstrip(".")


def test_zero_distractors_gives_the_target_alone():
    from dataclasses import replace

    solo = replace(CONFIG, max_distractors=0, min_span_frames=CONFIG.num_frames)
    frames, record, scene = make_stvg(0, seed=0, config=solo)
    assert len(scene) == 1 and record["span"] == [0.0, (CONFIG.num_frames - 1) / CONFIG.fps]
    with pytest.raises(ValueError, match="max_distractors"):
        SyntheticConfig(max_distractors=-1)


def test_distinct_colors_keeps_every_distractor_off_the_target_colour():
    from dataclasses import replace

    easy = replace(CONFIG, distinct_colors=True)
    shared = 0
    for index in range(60):
        _, _, scene = make_stvg(index, seed=3, config=easy)
        assert all(other.color != scene[0].color for other in scene[1:])
        _, _, plain = make_stvg(index, seed=3, config=CONFIG)
        shared += any(other.color == plain[0].color for other in plain[1:])
    assert shared > 0, "the default config should let a distractor share the target's colour"
