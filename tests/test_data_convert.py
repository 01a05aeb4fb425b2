"""Converters: fixture files in the official formats (described in each llava_st/data/convert module) -> valid
Uni-STG records with the right times (1-based frames, inclusive/exclusive ends, clipping, the closed-span time
contract of core.timespan) and pixel boxes."""

import csv
import json
import pickle

import pytest

from llava_st import cli
from llava_st.core.timespan import format_span, frames_to_span, parse_span, span_to_frames
from llava_st.data.convert import (
    Drops,
    convert_charades_sta,
    convert_didemo,
    convert_hcstvg,
    convert_refcoco,
    convert_tacos,
    convert_vidstg,
    convert_vidstg_tubedetr,
)
from llava_st.data.convert.vtg import didemo_span
from llava_st.data.jsonl import read_jsonl
from llava_st.data.schema import validate_record
from llava_st.data.templates import REC_ANSWER, TEMPLATES


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def _check(records):
    for r in records:
        assert validate_record(r) == [], r["id"]
    return records


# ---------------------------------------------------------------- HCSTVG
HCSTVG_V1 = {
    "55_vfjywN5CN0Y.mp4": {
        "bbox": [[100, 50, 40, 80], [102, 51, 40, 80], [104, 52, 40, 80], [630, 50, 40, 80]],
        "st_time": 8.91,
        "ed_time": 9.1,
        "img_num": 600,
        "caption": "The woman in red clothes turns in a circle.",
        "width": 640,
        "height": 360,
        "st_frame": 268,
    },
    "1_first.mp4": {  # tube starting at the first frame (st_frame = 1), 25 fps, a box fully outside the frame
        "bbox": [[0, 0, 10, 10], [700, 10, 5, 5], [1, 1, 10, 10]],
        "st_time": 0.0,
        "ed_time": 0.12,
        "img_num": 500,
        "caption": "A man sits.",
        "width": 640,
        "height": 360,
        "st_frame": 1,
    },
    "2_end.mp4": {  # tube running past the 20 s clip: clipped to it
        "bbox": [[5, 5, 10, 10]] * 4,
        "st_time": 19.9,
        "ed_time": 20.0,
        "img_num": 100,
        "caption": "A dog runs.",
        "width": 320,
        "height": 240,
        "st_frame": 99,
    },
    "3_bad.mp4": {"bbox": [[1, 1, 2, 2]], "img_num": 600, "caption": "broken", "width": 640, "height": 360},
}


def test_hcstvg_v1(tmp_path):
    drops = Drops()
    records = _check(
        list(convert_hcstvg(_write(tmp_path / "test.json", HCSTVG_V1), version=1, video_prefix="hcstvg/", drops=drops))
    )
    by_id = {r["id"]: r for r in records}
    r = by_id["hcstvg-v1_55_vfjywN5CN0Y"]
    assert r["task"] == "stvg" and r["video"] == "hcstvg/55_vfjywN5CN0Y.mp4"
    assert r["fps"] == 30.0 and r["duration"] == 20.0 and (r["width"], r["height"]) == (640, 360)
    # st_frame 268 is 1-based: the first box is frame index 267 -> 8.9 s; 4 boxes -> last frame 270 (closed span).
    assert r["span"] == [pytest.approx(267 / 30, abs=1e-4), pytest.approx(270 / 30, abs=1e-4)]
    assert tuple(r["span"]) == frames_to_span(267, 270, 30.0) and span_to_frames(r["span"], 30.0) == (267, 270)
    assert [b["t"] for b in r["boxes"]] == [pytest.approx(f / 30, abs=1e-4) for f in (267, 268, 269, 270)]
    assert r["boxes"][0]["xyxy"] == [100, 50, 140, 130]  # xywh -> xyxy pixels
    assert r["boxes"][3]["xyxy"] == [630, 50, 640, 130]  # clipped to the frame width
    assert parse_span(r["conversations"][1]["value"]).span == pytest.approx((8.9, 9.0), abs=0.051)  # 8.9s, 9.0s
    assert r["conversations"][0]["value"].startswith("<image>\n")
    assert "The woman in red clothes turns in a circle" in r["conversations"][0]["value"]
    first = by_id["hcstvg-v1_1_first"]
    assert first["span"] == [0.0, 0.08] and first["fps"] == 25.0  # frames 0..2
    assert len(first["boxes"]) == 2 and first["boxes"][1]["t"] == pytest.approx(2 / 25)
    end = by_id["hcstvg-v1_2_end"]
    assert end["fps"] == 5.0 and end["span"] == [19.6, 19.8]  # frames 98..101 cut to the clip's last frame 99
    assert "hcstvg-v1_3_bad" not in by_id
    assert drops["bad st_frame: missing"] == 1 and drops.ids["bad st_frame: missing"] == ["3_bad.mp4"]
    # one box right of the frame (1_first), two boxes at or after 20 s (2_end)
    assert drops["box outside the frame or the clip (dropped, sample kept)"] == 3


def test_hcstvg_v2_field_names(tmp_path):
    item = dict(HCSTVG_V1["55_vfjywN5CN0Y.mp4"])
    item["English"] = item.pop("caption")
    item["img_size"] = [item.pop("height"), item.pop("width")]  # [h, w]
    (r,) = _check(list(convert_hcstvg(_write(tmp_path / "valv2.json", {"a.mp4": item}), version=2)))
    assert (r["width"], r["height"]) == (640, 360) and r["caption"].startswith("The woman")
    assert r["id"] == "hcstvg-v2_a"


# ---------------------------------------------------------------- VidSTG
def _vidor(video_id, frames=20):
    trajectories = []
    for f in range(frames):
        boxes = [
            {
                "tid": 0,
                "bbox": {"xmin": 10 + f, "ymin": 20, "xmax": 50 + f, "ymax": 60},
                "generated": 0,
                "tracker": "none",
            }
        ]
        if 5 <= f < 9:
            boxes.append(
                {"tid": 1, "bbox": {"xmin": 0, "ymin": 0, "xmax": 700, "ymax": 30}, "generated": 1, "tracker": "linear"}
            )
        trajectories.append(boxes)
    return {
        "video_id": video_id,
        "video_path": f"0000/{video_id}.mp4",
        "frame_count": frames,
        "fps": 10,
        "width": 640,
        "height": 480,
        "subject/objects": [{"tid": 0, "category": "adult"}, {"tid": 1, "category": "dog"}],
        "trajectories": trajectories,
    }


VIDSTG = [
    {
        "vid": "2401075277",
        "fps": 10,
        "frame_count": 20,
        "width": 640,
        "height": 480,
        "used_segment": {"begin_fid": 2, "end_fid": 18},
        "temporal_gt": {"begin_fid": 5, "end_fid": 9},
        "subject/objects": [{"tid": 0, "category": "adult"}, {"tid": 1, "category": "dog"}],
        "captions": [{"description": "An adult in black walks.", "type": "adult", "target_id": 0}],
        "questions": [{"description": "What is beside the adult?", "type": "dog", "target_id": 1}],
    },
    {
        "vid": "missing",
        "fps": 10,
        "frame_count": 20,
        "width": 640,
        "height": 480,
        "used_segment": {"begin_fid": 0, "end_fid": 20},
        "temporal_gt": {"begin_fid": 0, "end_fid": 5},
        "subject/objects": [],
        "captions": [{"description": "x", "type": "adult", "target_id": 0}],
        "questions": [],
    },
]


def test_vidstg_original(tmp_path):
    vidor = tmp_path / "vidor" / "validation" / "0000"
    vidor.mkdir(parents=True)
    _write(vidor / "2401075277.json", _vidor("2401075277"))
    drops = Drops()
    records = _check(
        list(convert_vidstg(_write(tmp_path / "test_annotations.json", VIDSTG), str(tmp_path / "vidor"), drops=drops))
    )
    assert len(records) == 2
    decl = next(r for r in records if r["sentence_type"] == "declarative")
    inter = next(r for r in records if r["sentence_type"] == "interrogative")
    assert decl["video"] == "0000/2401075277.mp4" and decl["duration"] == 2.0
    # end_fid is exclusive: frames 5..8 -> the closed span [0.5, 0.8] s; the used segment 2..17 becomes `clip`.
    assert decl["span"] == [0.5, 0.8] and decl["clip"] == [0.2, 1.7]
    assert [b["t"] for b in decl["boxes"]] == [0.5, 0.6, 0.7, 0.8]
    assert decl["boxes"][0]["xyxy"] == [15, 20, 55, 60]
    assert inter["caption"] == "What is beside the adult?"
    assert inter["boxes"][0]["xyxy"] == [0, 0, 640, 30]  # clipped to the frame
    reason = f"no VidOR annotation for the video under {tmp_path / 'vidor'}"
    assert drops[reason] == 1 and drops.ids[reason] == ["vidstg[1] vid=missing"]


VIDSTG_TUBEDETR = {
    "videos": [
        {
            "original_video_id": "2401075277",
            "frame_count": 20,
            "fps": 10,
            "width": 640,
            "height": 480,
            "start_frame": 2,
            "end_frame": 18,
            "tube_start_frame": 5,
            "tube_end_frame": 9,
            "video_path": "0000/2401075277.mp4",
            "caption": "What is beside the adult?",
            "type": "dog",
            "target_id": 1,
            "video_id": 0,
            "qtype": "interrogative",
        },
        {
            "original_video_id": "2401075277",
            "frame_count": 20,
            "fps": 10,
            "width": 640,
            "height": 480,
            "start_frame": 2,
            "end_frame": 18,
            "tube_start_frame": 5,
            "tube_end_frame": 9,
            "video_path": "0000/2401075277.mp4",
            "caption": "gone",
            "type": "cat",
            "target_id": 7,
            "video_id": 1,
            "qtype": "declarative",
        },
    ],
    "trajectories": {
        "2401075277": {"1": {str(f): {"bbox": [10, 20, 30, 40], "category_id": 3} for f in range(5, 9)}}
    },
}


def test_vidstg_tubedetr(tmp_path):
    data = VIDSTG_TUBEDETR
    drops = Drops()
    (r,) = _check(list(convert_vidstg_tubedetr(_write(tmp_path / "test.json", data), drops=drops)))
    assert r["id"] == "vidstg_0" and r["span"] == [0.5, 0.8] and r["clip"] == [0.2, 1.7]
    assert r["boxes"][0] == {"t": 0.5, "xyxy": [10, 20, 40, 60]} and r["sentence_type"] == "interrogative"
    assert sum(drops.values()) == 1


def test_vidstg_official_vidor_layout_keys_by_video_id(tmp_path):
    """annotation/<split>/<group>/<file>.json, any depth: the video is found by the video_id inside the file,
    not by the file name (a file without video_id falls back to its name)."""
    root = tmp_path / "annotation"
    (root / "validation" / "0000" / "deeper").mkdir(parents=True)
    (root / "training" / "1001").mkdir(parents=True)
    _write(root / "validation" / "0000" / "deeper" / "renamed.json", _vidor("2401075277"))
    decoy = _vidor("other")  # named like the wanted video but holds another one
    _write(root / "training" / "1001" / "2401075277.json", decoy)
    no_id = _vidor("x")
    del no_id["video_id"]
    no_id["video_path"] = "1001/by_stem.mp4"
    _write(root / "training" / "1001" / "by_stem.json", no_id)
    (root / "training" / "1001" / "broken.json").write_text("{not json")
    entries = [dict(VIDSTG[0]), dict(VIDSTG[0], vid="by_stem"), dict(VIDSTG[0], vid="absent")]
    drops = Drops()
    records = _check(list(convert_vidstg(_write(tmp_path / "ann.json", entries), str(root), drops=drops)))
    assert {r["video"] for r in records} == {"0000/2401075277.mp4", "1001/by_stem.mp4"} and len(records) == 4
    reason = f"no VidOR annotation for the video under {root}"
    assert drops.ids[reason] == ["vidstg[2] vid=absent"] and sum(drops.values()) == 1


def test_vidor_video_id_read_from_the_head_or_the_whole_file(tmp_path):
    from llava_st.data.convert.vidstg import _NO_ID, read_video_id

    big = _vidor("2401075277", frames=3000)  # > 64 KiB, video_id near the start
    assert read_video_id(_write(tmp_path / "a.json", big)) == "2401075277"
    late = {"trajectories": big["trajectories"], "video_id": 12}  # video_id after 64 KiB of trajectories
    assert read_video_id(_write(tmp_path / "b.json", late)) == "12"
    assert read_video_id(_write(tmp_path / "c.json", {"trajectories": []})) is _NO_ID
    assert read_video_id(_write(tmp_path / "d.json", [1, 2])) is _NO_ID
    (tmp_path / "e.json").write_text('{"video_id": "1", "traj')  # cut after the id: indexed, reported when loaded
    assert read_video_id(str(tmp_path / "e.json")) == "1"
    (tmp_path / "f.json").write_text('{"video_id": "1')  # cut inside the id
    assert read_video_id(str(tmp_path / "f.json")) is _NO_ID


def _stvg_fixture_records(tmp_path):
    vidor = tmp_path / "vidor" / "validation" / "0000"
    vidor.mkdir(parents=True)
    _write(vidor / "2401075277.json", _vidor("2401075277"))
    yield from convert_hcstvg(_write(tmp_path / "v1.json", HCSTVG_V1), version=1)
    item = dict(HCSTVG_V1["55_vfjywN5CN0Y.mp4"])
    item["English"] = item.pop("caption")
    item["img_size"] = [item.pop("height"), item.pop("width")]
    yield from convert_hcstvg(_write(tmp_path / "v2.json", {"a.mp4": item}), version=2)
    yield from convert_vidstg(_write(tmp_path / "vidstg.json", VIDSTG), str(tmp_path / "vidor"))
    yield from convert_vidstg_tubedetr(_write(tmp_path / "tubedetr.json", VIDSTG_TUBEDETR))


def test_stvg_span_is_the_closed_span_of_the_first_and_last_box(tmp_path):
    """The time contract: a ground-truth tube identical to its record scores tIoU 1 -- the span is
    frames_to_span of its first and last box frame, not an exclusive end one frame later."""
    records = _check(list(_stvg_fixture_records(tmp_path)))
    assert len(records) == 7
    for r in records:
        fps = r["fps"]
        first, last = round(r["boxes"][0]["t"] * fps), round(r["boxes"][-1]["t"] * fps)
        assert span_to_frames(r["span"], fps) == (first, last), r["id"]
        assert tuple(r["span"]) == frames_to_span(first, last, fps), r["id"]


# ---------------------------------------------------------------- VTG
def _charades(tmp_path):
    ann = tmp_path / "charades_sta_test.txt"
    ann.write_text(
        "3MSZA 24.3 30.4##person turn a light on.\n"
        "3MSZA 28.0 40.0##person opens the door.\n"  # end past the 31.0 s video: clipped
        "3MSZA 35.0 40.0##person leaves.\n"  # starts after the end: dropped
        "ZZZZZ 1.0 2.0##no duration known.\n"
        "garbage line\n"
    )
    durations = tmp_path / "Charades_v1_test.csv"
    with open(durations, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "subject", "scene", "length"])
        w.writeheader()
        w.writerow({"id": "3MSZA", "subject": "X", "scene": "Kitchen", "length": "31.0"})
    return str(ann), str(durations)


def test_charades_sta(tmp_path):
    drops = Drops()
    records = _check(list(convert_charades_sta(*_charades(tmp_path), video_prefix="Charades/", drops=drops)))
    assert [r["span"] for r in records] == [[24.3, 30.4], [28.0, 31.0]]
    assert records[0]["video"] == "Charades/3MSZA.mp4" and records[0]["duration"] == 31.0
    assert records[0]["conversations"][1]["value"] == format_span(24.3, 30.4)
    assert sum(drops.values()) == 3


def test_didemo(tmp_path):
    items = [
        {
            "num_segments": 6,
            "description": "a girl jumps",
            "times": [[1, 4], [1, 4], [0, 0], [2, 3]],
            "video": "14636981@N00_2855513580_b8e4f1aba5.mov",
            "annotation_id": 1,
            "dl_link": "x",
        },
        {
            "num_segments": 5,
            "description": "the end",
            "times": [[4, 4], [3, 4]],
            "video": "short.mov",
            "annotation_id": 2,
        },
        {"num_segments": 6, "description": "reversed", "times": [[3, 1]], "video": "v.mov", "annotation_id": 3},
    ]
    drops = Drops()
    records = _check(
        list(
            convert_didemo(
                _write(tmp_path / "val_data.json", items),
                durations=_write(tmp_path / "d.json", {"short.mov": 22.5}),
                drops=drops,
            )
        )
    )
    a, b = records
    assert a["span"] == [5.0, 25.0] and a["duration"] == 30.0  # inclusive chunks (1, 4) -> 5-25 s
    assert a["annotator_spans"] == [[5.0, 25.0], [5.0, 25.0], [0.0, 5.0], [10.0, 20.0]]
    assert b["span"] == [20.0, 22.5] and b["duration"] == 22.5  # clipped to the real duration
    assert didemo_span([[0, 0], [2, 2], [2, 2], [0, 0]]) == (0.0, 5.0)  # tie: the first given
    assert sum(drops.values()) == 1


def test_tacos(tmp_path):
    data = {
        "s30-d52.avi": {
            "timestamps": [[141, 354], [7000, 7400], [10, 10]],
            "sentences": ["He takes a knife.", "He washes up.", "empty"],
            "fps": 29.4,
            "num_frames": 7346,
        }
    }
    drops = Drops()
    records = _check(list(convert_tacos(_write(tmp_path / "test.json", data), drops=drops)))
    assert len(records) == 2 and drops["empty span after clipping to the duration, or empty sentence"] == 1
    assert records[0]["span"] == [pytest.approx(141 / 29.4, abs=1e-4), pytest.approx(354 / 29.4, abs=1e-4)]
    # frames 7000..7400 cut to the video's last frame 7345 (closed span); the duration is num_frames / fps
    assert records[1]["span"][1] == pytest.approx(7345 / 29.4, abs=1e-4)
    assert records[1]["duration"] == pytest.approx(7346 / 29.4, abs=1e-4)
    assert span_to_frames(records[0]["span"], 29.4) == (141, 354)


# ---------------------------------------------------------------- RefCOCO
REFS = [
    {
        "ref_id": 0,
        "ann_id": 10,
        "category_id": 1,
        "image_id": 5,
        "file_name": "COCO_train2014_000000000005_10.jpg",
        "split": "train",
        "sent_ids": [0, 1],
        "sentences": [
            {"tokens": ["left", "man"], "raw": "Left man", "sent_id": 0, "sent": "left man"},
            {"tokens": ["guy"], "raw": "guy", "sent_id": 1, "sent": "guy on the left"},
        ],
    },
    {
        "ref_id": 1,
        "ann_id": 11,
        "category_id": 1,
        "image_id": 5,
        "file_name": "COCO_train2014_000000000005_11.jpg",
        "split": "testA",
        "sent_ids": [2],
        "sentences": [{"tokens": ["right"], "raw": "right", "sent_id": 2, "sent": "right one"}],
    },
]
INSTANCES = {
    "images": [{"id": 5, "file_name": "COCO_train2014_000000000005.jpg", "width": 640, "height": 427}],
    "annotations": [
        {"id": 10, "image_id": 5, "bbox": [10.5, 20.0, 100.0, 200.0], "category_id": 1},
        {"id": 11, "image_id": 5, "bbox": [600.0, 20.0, 100.0, 500.0], "category_id": 1},
    ],
    "categories": [{"id": 1, "name": "person"}],
}


@pytest.mark.parametrize("dataset", ["refcoco", "refcoco+", "refcocog"])
def test_refcoco(tmp_path, dataset):
    refs = _write(tmp_path / "refs.json", REFS)
    inst = _write(tmp_path / "instances.json", INSTANCES)
    records = _check(list(convert_refcoco(refs, inst, dataset=dataset, split="train", image_prefix="coco/")))
    assert [r["id"] for r in records] == [f"{dataset}_0_0", f"{dataset}_0_1"]
    r = records[0]
    assert r["task"] == "rec" and r["image"] == "coco/COCO_train2014_000000000005.jpg" and "span" not in r
    assert r["boxes"] == [{"t": 0.0, "xyxy": [10.5, 20.0, 110.5, 220.0]}] and (r["width"], r["height"]) == (640, 427)
    assert r["conversations"][1]["value"] == REC_ANSWER
    (t,) = _check(list(convert_refcoco(refs, inst, dataset=dataset, split="testA")))
    assert t["boxes"][0]["xyxy"] == [600.0, 20.0, 640.0, 427.0]  # clipped to the image


def test_refcoco_pickle_needs_consent(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps(REFS))
    inst = _write(tmp_path / "instances.json", INSTANCES)
    with pytest.raises(ValueError, match="allow_pickle"):
        list(convert_refcoco(str(path), inst))
    assert len(list(convert_refcoco(str(path), inst, allow_pickle=True))) == 3


def test_templates_vary_and_are_seeded(tmp_path):
    items = {f"{i}.mp4": dict(HCSTVG_V1["55_vfjywN5CN0Y.mp4"]) for i in range(40)}
    ann = _write(tmp_path / "t.json", items)
    prompts = [r["conversations"][0]["value"] for r in convert_hcstvg(ann, seed=3)]
    assert len(set(prompts)) > 1
    assert prompts == [r["conversations"][0]["value"] for r in convert_hcstvg(ann, seed=3)]
    phrases = {t.split("{caption}")[0] for t in TEMPLATES["stvg"]}
    assert all(any(p.split("\n", 1)[1].startswith(ph) for ph in phrases) for p in prompts)


def test_cli_convert(tmp_path, capsys):
    ann, durations = _charades(tmp_path)
    out = tmp_path / "out.jsonl"
    argv = ["data", "convert", "charades-sta", "--ann", ann, "--durations", durations, "--out", str(out)]
    assert cli.main(argv) == 0
    assert "wrote 2 records" in capsys.readouterr().out
    assert [r["span"] for r in read_jsonl(out)] == [[24.3, 30.4], [28.0, 31.0]]
    assert cli.main(argv[:-4] + ["--out", str(out)]) == 2
    assert "--durations" in capsys.readouterr().err
