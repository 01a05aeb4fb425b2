"""The dataset/collator extension of upstream's LazySupervisedDataset on a mixed Uni-STG file with real
mp4s and images: grounding targets on the sampled frames, upstream's handling of QA, bad samples."""

import json
from pathlib import Path

import numpy as np
import pytest

from llava_st.data.templates import REC_ANSWER, instruction

pytestmark = pytest.mark.upstream

CAPTION = "the red box moving right"
FPS, FRAMES, W, H = 10.0, 40, 96, 64


def write_mixed_data(root: Path, bad: bool = False) -> Path:
    """A JSON list of stvg + rec + vtg + qa records over real files under `root` (the data folder);
    with `bad`, also a missing video, a corrupt video, a missing image and two invalid records."""
    from PIL import Image

    from llava_st.testing import write_moving_box_video

    root.mkdir(parents=True, exist_ok=True)
    _, boxes = write_moving_box_video(root / "box.mp4", num_frames=FRAMES, fps=FPS, width=W, height=H, span=(10, 29))
    image = np.full((H, W, 3), 110, dtype=np.uint8)
    image[20:44, 30:60] = (230, 40, 40)
    Image.fromarray(image).save(root / "box.png")
    video = dict(video="box.mp4", width=W, height=H, duration=FRAMES / FPS, fps=FPS)
    tube = [{"t": t / FPS, "xyxy": boxes[t].tolist()} for t in range(10, 30)]

    def turns(question, answer):
        return [{"from": "human", "value": "<image>\n" + question}, {"from": "gpt", "value": answer}]

    records = [
        dict(id="stvg-0", task="stvg", caption=CAPTION, span=[1.0, 2.9], boxes=tube,
             conversations=turns(instruction("stvg", CAPTION), "From 1.0s to 2.9s."), **video),
        dict(id="rec-0", task="rec", image="box.png", caption="the red box", width=W, height=H,
             boxes=[{"t": 0.0, "xyxy": [30, 20, 60, 44]}], conversations=turns(instruction("rec", "the red box"), REC_ANSWER)),
        dict(id="vtg-0", task="vtg", caption=CAPTION, span=[1.0, 2.9],
             conversations=turns(instruction("vtg", CAPTION), "From 1.0s to 2.9s."), video="box.mp4", duration=FRAMES / FPS),
        dict(id="qa-0", task="qa", video="box.mp4", conversations=turns("What colour is the box?", "Red.")),
    ]
    if bad:
        (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
        records += [
            dict(records[0], id="bad-missing-video", video="nowhere.mp4"),
            dict(records[0], id="bad-corrupt-video", video="corrupt.mp4"),
            dict(records[1], id="bad-missing-image", image="nowhere.png"),
            dict(records[0], id="bad-span", span=[3.0, 1.0]),
            {"id": "bad-no-conversations", "task": "qa", "video": "box.mp4"},
        ]
    path = root / ("mixed_bad.json" if bad else "mixed.json")
    path.write_text(json.dumps(records))
    return path


def data_args(root: Path, frames_upbound: int = 8):
    from llava import conversation as conversation_lib
    from llava.model.multimodal_encoder.siglip_encoder import SigLipImageProcessor
    from llava.train.train import DataArguments

    from llava_st.testing.upstream import TINY_GRID_PINPOINTS

    conversation_lib.default_conversation = conversation_lib.conv_templates["qwen_1_5"]
    args = DataArguments(data_path=None, image_folder=str(root), video_folder=str(root), image_aspect_ratio="anyres_max_9",
                         frames_upbound=frames_upbound, force_sample=True, add_time_instruction=True)
    args.image_grid_pinpoints = TINY_GRID_PINPOINTS
    args.image_processor = SigLipImageProcessor()
    args.is_multimodal = True
    args.mm_use_im_start_end = False
    return args


@pytest.fixture(scope="module")
def data_root(cache_dir):
    return cache_dir / "train-data"


def test_grounding_targets_match_the_frames_upstream_sampled(data_root, qwen_tokenizer):
    from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

    from llava_st.core.batch import GROUNDING_BOX_MASK, GROUNDING_BOXES, GROUNDING_TEXT_INDEX, GROUNDING_TEXT_MASK
    from llava_st.data.video import sample_frames
    from llava_st.hosts.llava_next.data import GroundingCollator, GroundingDataset

    path = write_mixed_data(data_root)
    ds = GroundingDataset(str(path), qwen_tokenizer, data_args(data_root))
    items = {item["id"]: item for item in (ds[i] for i in range(len(ds)))}
    assert set(items) == {"stvg-0", "rec-0", "vtg-0", "qa-0"} and not ds.bad.entries

    times = sample_frames(FRAMES, FPS, frames_upbound=8, force_sample=True).times  # frames 0,5,11,16,22,27,33,39
    stvg = items["stvg-0"]
    text = qwen_tokenizer.decode([t for t in stvg["input_ids"].tolist() if t != IMAGE_TOKEN_INDEX])
    assert ",".join(f"{t:.2f}s" for t in times) in text  # the time instruction carries the same times
    answer = qwen_tokenizer.decode([t for t in stvg["labels"].tolist() if t != IGNORE_INDEX])
    # span [1.0, 2.9] snaps to the sampled times 1.1 s and 2.7 s (frames 11 and 27)
    assert "From 1.1s to 2.7s." in answer
    g = stvg["grounding"]
    inside = (times >= 1.1 - 1e-6) & (times <= 2.7 + 1e-6)
    assert g[GROUNDING_BOX_MASK].tolist() == inside.tolist() and g[GROUNDING_BOXES].shape == (8, 4)
    frame = int(np.flatnonzero(inside)[0])
    index = int(round(times[frame] * FPS))
    x0 = (index - 10) / 19 * (W - 24)
    assert g[GROUNDING_BOXES][frame, 0].item() == pytest.approx((round(x0) + 12) / W, abs=1e-4)  # cx of that frame's box
    assert qwen_tokenizer.decode(stvg["input_ids"][g[GROUNDING_TEXT_INDEX]].tolist()).strip() == CAPTION

    rec = items["rec-0"]["grounding"]
    assert rec[GROUNDING_BOX_MASK].tolist() == [True]
    assert rec[GROUNDING_BOXES][0].tolist() == pytest.approx([45 / W, 32 / H, 30 / W, 24 / H])
    assert "grounding" not in items["vtg-0"] and "grounding" not in items["qa-0"]
    assert "From 1.1s to 2.7s." in qwen_tokenizer.decode([t for t in items["vtg-0"]["labels"].tolist() if t != IGNORE_INDEX])
    assert "Red." in qwen_tokenizer.decode([t for t in items["qa-0"]["labels"].tolist() if t != IGNORE_INDEX])
    assert "From 1.0s to 2.9s." in ds.list_data_dict[0]["conversations"][1]["value"]  # records stay untouched

    batch = GroundingCollator(tokenizer=qwen_tokenizer)([items[k] for k in ("qa-0", "stvg-0", "rec-0")])
    assert batch[GROUNDING_BOXES].shape == (3, 8, 4)
    assert batch[GROUNDING_BOX_MASK].sum(1).tolist() == [0, int(inside.sum()), 1]
    assert batch[GROUNDING_TEXT_MASK][0].sum() == 0 and batch[GROUNDING_TEXT_MASK][1].all()
    assert batch[GROUNDING_TEXT_INDEX][1].tolist() == g[GROUNDING_TEXT_INDEX].tolist()
    assert len(batch["images"]) == 3 and batch["modalities"] == ["video", "video", "image"]


def test_bad_samples_are_logged_once_counted_and_replaced(data_root, qwen_tokenizer, caplog):
    from llava_st.hosts.llava_next.data import GroundingDataset, summarize

    path = write_mixed_data(data_root, bad=True)
    ds = GroundingDataset(str(path), qwen_tokenizer, data_args(data_root))
    assert ds.bad.counts == {"invalid record": 2}  # dropped at load, with id and field
    reasons = " ".join(e["id"] + " " + e["reason"] for e in ds.bad.entries)
    assert "bad-span" in reasons and "field=span" in reasons and "bad-no-conversations" in reasons
    log = data_root / "bad.jsonl"
    log.unlink(missing_ok=True)
    ds.bad.attach(str(log))
    good = {"stvg-0", "rec-0", "vtg-0", "qa-0"}
    for _ in range(2):  # a second epoch: each bad sample is logged once
        ids = [ds[i]["id"] for i in range(len(ds))]
        assert set(ids) <= good and len(ids) == len(ds) == 7
    assert ds.bad.counts == {"invalid record": 2, "missing file": 2, "corrupt file": 1}
    assert summarize(str(log)) == ds.bad.counts
    assert sum("bad-corrupt-video" in r.getMessage() for r in caplog.records) == 1


def test_boxes_as_text_ablation_writes_the_boxes_into_the_answer(data_root, qwen_tokenizer):
    from llava.constants import IGNORE_INDEX

    from llava_st.core.boxtext import parse_boxes_text
    from llava_st.hosts.llava_next.data import GroundingDataset

    ds = GroundingDataset(str(write_mixed_data(data_root)), qwen_tokenizer, data_args(data_root, frames_upbound=8))
    ds.boxes_as_text = True
    stvg, rec = ds[0], ds[1]
    assert "grounding" not in stvg and "grounding" not in rec
    answer = qwen_tokenizer.decode([t for t in stvg["labels"].tolist() if t != IGNORE_INDEX])
    span, boxes = parse_boxes_text(answer.split("assistant\n", 1)[1])
    assert span.span == (1.1, 2.7) and sorted(boxes) == [1.1, 1.6, 2.2, 2.7]
    assert boxes[1.1] == pytest.approx([4 / W, 22 / H, 28 / W, 42 / H], abs=0.006)  # frame 11, two decimals
    rec_answer = qwen_tokenizer.decode([t for t in rec["labels"].tolist() if t != IGNORE_INDEX])
    assert "[0.31, 0.31, 0.62, 0.69]" in rec_answer


def test_media_paths_leaving_the_data_folders_are_dropped_at_load(tmp_path, qwen_tokenizer):
    """The one path rule (data.paths): a link out of --video_folder/--image_folder, `..` or an absolute path
    is never read; such records are dropped at load, counted by reason and named by id and field."""
    import shutil

    from llava_st.hosts.llava_next.data import PATH_OUTSIDE, GroundingDataset

    root = tmp_path / "data"
    path = write_mixed_data(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(root / "box.mp4", outside / "secret.mp4")
    shutil.copy(root / "box.png", outside / "secret.png")
    (root / "out.mp4").symlink_to(outside / "secret.mp4")
    (root / "out_dir").symlink_to(outside)
    (root / "inside.mp4").symlink_to(root / "box.mp4")
    records = json.loads(path.read_text())
    stvg, rec, qa = records[0], records[1], records[3]
    records += [
        dict(stvg, id="link-video", video="out.mp4"),
        dict(qa, id="link-dir", video="out_dir/secret.mp4"),
        dict(rec, id="link-image", image="out_dir/secret.png"),
        dict(qa, id="dotdot", video="../outside/secret.mp4"),
        {"id": "plain-abs", "video": str(outside / "secret.mp4"), "conversations": qa["conversations"]},  # no task
        dict(stvg, id="inside-link", video="inside.mp4"),
    ]
    path.write_text(json.dumps(records))
    ds = GroundingDataset(str(path), qwen_tokenizer, data_args(root))
    assert ds.bad.counts == {PATH_OUTSIDE: 4, "invalid record": 1}  # `..` in a Uni-STG record: the validator's check
    named = {e["id"]: e["reason"] for e in ds.bad.entries}
    assert "id=link-video field=video:" in named["link-video"] and "through a link" in named["link-video"]
    assert "id=link-image field=image:" in named["link-image"]
    assert "field=video" in named["dotdot"] and "field=video" in named["plain-abs"]
    ids = [ds[i]["id"] for i in range(len(ds))]
    assert sorted(ids) == sorted(["stvg-0", "rec-0", "vtg-0", "qa-0", "inside-link"])
    assert ds.bad.counts == {PATH_OUTSIDE: 4, "invalid record": 1}  # nothing failed to read
    # A link that turns to point outside after the load is caught when the sample is read.
    (root / "inside.mp4").unlink()
    (root / "inside.mp4").symlink_to(outside / "secret.mp4")
    item = ds[ids.index("inside-link")]
    assert item["id"] != "inside-link" and "inside-link" in {e["id"] for e in ds.bad.entries if e["kind"] == PATH_OUTSIDE}
