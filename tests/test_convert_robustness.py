"""Converters on corrupted official-format input: every good entry converted and valid, every bad entry
(non-dict, wrong types, NaN/inf, huge ints, non-integral frames, bools for numbers, negative sizes)
reported through Drops by field and id, nothing else lost; an unreadable file is one error naming it."""

import copy
import csv
import json

import pytest

from llava_st import cli
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
from llava_st.data.convert.common import ConvertInputError
from llava_st.data.schema import validate_record

NAN, INF, HUGE = float("nan"), float("inf"), 10**30
BOX_DROPS = "box outside the frame or the clip (dropped, sample kept)"


def _write(path, obj):
    path.write_text(json.dumps(obj))  # NaN / Infinity written as JSON's extensions, as json.load reads them
    return str(path)


def _noted(drops: Drops) -> dict:
    """id -> reason of every noted drop (each id noted once)."""
    out = {}
    for reason, ids in drops.ids.items():
        assert len(ids) == drops[reason], reason
        for i in ids:
            assert i not in out, f"{i} noted twice: {out[i]!r} and {reason!r}"
            out[i] = reason
    return out


def _check(records, good):
    for r in records:
        assert validate_record(r) == [], r["id"]
    assert sorted(r["id"] for r in records) == sorted(good)
    return records


# ---------------------------------------------------------------- HC-STVG
HC_GOOD = {
    "bbox": [[100, 50, 40, 80], [102, 51, 40, 80], [104, 52, 40, 80]],
    "st_time": 8.91,
    "ed_time": 9.1,
    "img_num": 600,
    "caption": "The woman in red clothes turns in a circle.",
    "width": 640,
    "height": 360,
    "st_frame": 268,
}


def _hc(**changes):
    item = copy.deepcopy(HC_GOOD)
    for k, v in changes.items():
        if v is KeyError:
            del item[k]
        else:
            item[k] = v
    return item


HC_BAD = {
    "list.mp4": [1, 2],
    "null.mp4": None,
    "int_caption.mp4": _hc(caption=7),
    "blank_caption.mp4": _hc(caption="  "),
    "no_caption.mp4": _hc(caption=KeyError),
    "st_frame_2.7.mp4": _hc(st_frame=2.7),
    "st_frame_bool.mp4": _hc(st_frame=True),
    "st_frame_nan.mp4": _hc(st_frame=NAN),
    "st_frame_inf.mp4": _hc(st_frame=INF),
    "st_frame_huge.mp4": _hc(st_frame=HUGE),
    "st_frame_0.mp4": _hc(st_frame=0),
    "st_frame_str.mp4": _hc(st_frame="268"),
    "img_num_0.mp4": _hc(img_num=0),
    "img_num_neg.mp4": _hc(img_num=-600),
    "img_num_frac.mp4": _hc(img_num=600.5),
    "width_neg.mp4": _hc(width=-640),
    "width_str.mp4": _hc(width="640"),
    "height_nan.mp4": _hc(height=NAN),
    "height_huge.mp4": _hc(height=HUGE * HUGE * HUGE * HUGE * HUGE * HUGE * HUGE * HUGE * HUGE * HUGE * HUGE),
    "bbox_dict.mp4": _hc(bbox={"a": 1}),
    "bbox_empty.mp4": _hc(bbox=[]),
    "bbox_three.mp4": _hc(bbox=[[1, 2, 3]]),
    "bbox_negative.mp4": _hc(bbox=[[1, 2, 3, 4], [1, 2, -3, 4]]),
    "bbox_nan.mp4": _hc(bbox=[[1, NAN, 3, 4]]),
    "bbox_bool.mp4": _hc(bbox=[[1, 2, True, 4]]),
}


def test_hcstvg_survives_bad_entries(tmp_path):
    one_frame = _hc(bbox=[[1, 2, 3, 4]])  # a tube of one frame: a closed span with start == end
    data = {"good.mp4": HC_GOOD, "float_frame.mp4": _hc(st_frame=268.0), "one_frame.mp4": one_frame, **HC_BAD}
    drops = Drops()
    records = _check(list(convert_hcstvg(_write(tmp_path / "a.json", data), drops=drops)),
                     ["hcstvg-v1_good", "hcstvg-v1_float_frame", "hcstvg-v1_one_frame"])
    assert records[0]["span"] == records[1]["span"]  # 268.0 is frame 268
    assert records[2]["span"][0] == records[2]["span"][1] == records[2]["boxes"][0]["t"]
    noted = _noted(drops)
    assert set(noted) == set(HC_BAD)
    assert noted["st_frame_2.7.mp4"] == "bad st_frame: not an integral frame number"
    assert noted["int_caption.mp4"] == "bad caption: not a string"
    assert noted["bbox_negative.mp4"] == "bad bbox: negative width or height"
    assert noted["st_frame_bool.mp4"] == noted["st_frame_str.mp4"] == "bad st_frame: not a frame number"
    assert all("st_frame" in noted[k] for k in HC_BAD if k.startswith("st_frame"))


def test_hcstvg_v2_bad_img_size(tmp_path):
    good = _hc(English="A man sits.", img_size=[360, 640], caption=KeyError, width=KeyError, height=KeyError)
    data = {"good.mp4": good, "short.mp4": dict(good, img_size=[360]), "nan.mp4": dict(good, img_size=[NAN, 640])}
    drops = Drops()
    _check(list(convert_hcstvg(_write(tmp_path / "a.json", data), version=2, drops=drops)), ["hcstvg-v2_good"])
    assert _noted(drops) == {"short.mp4": "bad img_size: not [height, width]", "nan.mp4": "bad img_size: not a finite number"}


# ---------------------------------------------------------------- VidSTG
def _vidor(video_id, frames=20, bad_tid1=False):
    trajectories = []
    for f in range(frames):
        boxes = [{"tid": 0, "bbox": {"xmin": 10 + f, "ymin": 20, "xmax": 50 + f, "ymax": 60}}]
        if 5 <= f < 9:
            boxes.append({"tid": 1, "bbox": {"xmin": 0, "ymin": NAN if bad_tid1 else 0, "xmax": 700, "ymax": 30}})
        trajectories.append(boxes)
    return {"video_id": video_id, "video_path": f"0000/{video_id}.mp4", "trajectories": trajectories}


VID_GOOD = {
    "vid": "v1",
    "fps": 10,
    "frame_count": 20,
    "width": 640,
    "height": 480,
    "used_segment": {"begin_fid": 2, "end_fid": 18},
    "temporal_gt": {"begin_fid": 5, "end_fid": 9},
    "captions": [{"description": "An adult walks.", "type": "adult", "target_id": 0}],
    "questions": [{"description": "What is beside the adult?", "type": "dog", "target_id": 1}],
}


def _vid(**changes):
    item = copy.deepcopy(VID_GOOD)
    for k, v in changes.items():
        if "." in k:
            outer, inner = k.split(".")
            item[outer][inner] = v
        elif v is KeyError:
            del item[k]
        else:
            item[k] = v
    return item


def test_vidstg_survives_bad_entries(tmp_path):
    vidor = tmp_path / "vidor" / "training" / "0000"
    vidor.mkdir(parents=True)
    _write(vidor / "f1.json", _vidor("v1"))
    _write(vidor / "f2.json", _vidor("v2", bad_tid1=True))  # a bad box of tid 1: only sentences about tid 1 lost
    (vidor / "v3.json").write_text("{broken")  # unreadable: indexed by its name, reported when loaded
    _write(vidor / "f4.json", {"video_id": "v4", "video_path": "v4.mp4", "trajectories": "x"})  # not VidOR's structure
    entries = [
        VID_GOOD,  # 0
        [1],  # 1
        None,  # 2
        _vid(vid=KeyError),  # 3
        _vid(vid=[1]),  # 4
        _vid(fps=0),  # 5
        _vid(fps=NAN),  # 6
        _vid(frame_count=2.5),  # 7
        _vid(**{"used_segment.end_fid": 1e9}),  # 8: reported, not iterated
        _vid(**{"temporal_gt.end_fid": 21}),  # 9: past frame_count
        _vid(**{"temporal_gt.begin_fid": 2.7}),  # 10
        _vid(**{"temporal_gt.begin_fid": 0}),  # 11: outside the used segment
        _vid(**{"temporal_gt.end_fid": 6}),  # 12: one frame, a closed span with start == end
        _vid(width=True),  # 13
        _vid(height=-1),  # 14
        _vid(used_segment=[2, 18]),  # 15
        _vid(frame_count=HUGE),  # 16
        _vid(vid="v2"),  # 17: the question (tid 1) lost, the caption kept
        _vid(vid="v3"),  # 18
        _vid(captions=[{"description": 5, "target_id": 0}, "x", {"description": "ok", "target_id": [0]}]),  # 19
        _vid(captions={"a": 1}),  # 20: the questions still converted
        _vid(**{"temporal_gt.begin_fid": 5.0}),  # 21: good, 5.0 is frame 5
        _vid(vid="nowhere"),  # 22
        _vid(vid="v4"),  # 23
    ]
    drops = Drops()
    good = ["vidstg_0_v1_d0", "vidstg_0_v1_i0", "vidstg_17_v2_d0", "vidstg_19_v1_i0", "vidstg_20_v1_i0"]
    good += ["vidstg_21_v1_d0", "vidstg_21_v1_i0", "vidstg_12_v1_d0", "vidstg_12_v1_i0"]
    records = _check(list(convert_vidstg(_write(tmp_path / "ann.json", entries), str(tmp_path / "vidor"), drops=drops)), good)
    assert records[0]["span"] == [0.5, 0.8]
    noted = _noted(drops)
    bad_entries = {f"vidstg[{i}]" for i in (1, 2, 3, 4)}
    bad_entries |= {f"vidstg[{i}] vid=v1" for i in (5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16)}
    bad_sentences = {"vidstg_17_v2_i0", "vidstg_19_v1_d0", "vidstg_19_v1_d1", "vidstg_19_v1_d2", "vidstg_20_v1"}
    assert set(noted) == bad_entries | bad_sentences | {"vidstg[18] vid=v3", "vidstg[22] vid=nowhere", "vidstg[23] vid=v4"}
    assert noted["vidstg[8] vid=v1"] == "bad used_segment.end_fid: a frame number beyond any real video (> 10000000)"
    assert noted["vidstg[9] vid=v1"] == "bad temporal_gt: not 0 <= begin_fid < end_fid <= frame_count"
    assert noted["vidstg[10] vid=v1"] == "bad temporal_gt.begin_fid: not an integral frame number"
    assert noted["vidstg[11] vid=v1"] == "bad temporal_gt: not inside used_segment"
    assert noted["vidstg[18] vid=v3"] == "bad VidOR annotation: unreadable file"
    assert noted["vidstg[23] vid=v4"] == "bad VidOR trajectories: not a JSON array (got a string)"
    assert noted["vidstg_17_v2_i0"] == "bad VidOR box bbox: not a finite number"
    assert noted["vidstg_19_v1_d0"] == "bad captions.description: not a string"
    assert noted["vidstg[22] vid=nowhere"] == f"no VidOR annotation for the video under {tmp_path / 'vidor'}"


def test_vidstg_bad_inputs_are_one_error_naming_them(tmp_path):
    ann = _write(tmp_path / "ann.json", {"not": "a list"})
    with pytest.raises(ConvertInputError, match="ann.json: expected an array"):
        list(convert_vidstg(ann, str(tmp_path)))
    with pytest.raises(ConvertInputError, match="nodir: not a directory"):
        list(convert_vidstg(ann, str(tmp_path / "nodir")))


TD_GOOD = {
    "original_video_id": "v1",
    "frame_count": 20,
    "fps": 10,
    "width": 640,
    "height": 480,
    "start_frame": 2,
    "end_frame": 18,
    "tube_start_frame": 5,
    "tube_end_frame": 9,
    "video_path": "0000/v1.mp4",
    "caption": "What is beside the adult?",
    "target_id": 1,
    "video_id": 0,
    "qtype": "interrogative",
}


def test_vidstg_tubedetr_survives_bad_entries(tmp_path):
    bad = [
        ("vidstg-tubedetr[1]", "x"),
        ("vidstg-tubedetr[2]", {k: v for k, v in TD_GOOD.items() if k != "video_id"}),
        ("vidstg_3", dict(TD_GOOD, video_id=3, tube_end_frame=1e9)),
        ("vidstg_15", dict(TD_GOOD, video_id=15, tube_end_frame=21, end_frame=21)),
        ("vidstg_4", dict(TD_GOOD, video_id=4, tube_start_frame=5.5)),
        ("vidstg_5", dict(TD_GOOD, video_id=5, fps=INF)),
        ("vidstg_6", dict(TD_GOOD, video_id=6, caption=None)),
        ("vidstg_7", dict(TD_GOOD, video_id=7, original_video_id="gone")),
        ("vidstg_8", dict(TD_GOOD, video_id=8, target_id=2)),  # a frame key that is no number
        ("vidstg_9", dict(TD_GOOD, video_id=9, target_id=3)),  # a negative box size
        ("vidstg_10", dict(TD_GOOD, video_id=10, qtype=1)),
        ("vidstg_11", dict(TD_GOOD, video_id=11, width=NAN)),
        ("vidstg_12", dict(TD_GOOD, video_id=12, frame_count=-20)),
        ("vidstg_13", dict(TD_GOOD, video_id=13, end_frame=8)),  # the tube outside the segment
    ]
    data = {
        "videos": [TD_GOOD] + [v for _, v in bad] + [dict(TD_GOOD, video_id=14, tube_end_frame=9.0)],
        "trajectories": {
            "v1": {
                "1": {str(f): {"bbox": [10, 20, 30, 40]} for f in range(5, 9)},
                "2": {"5": {"bbox": [1, 1, 1, 1]}, "six": {"bbox": [1, 1, 1, 1]}},
                "3": {"5": {"bbox": [1, 1, -1, 1]}},
            }
        },
    }
    drops = Drops()
    records = _check(list(convert_vidstg_tubedetr(_write(tmp_path / "t.json", data), drops=drops)), ["vidstg_0", "vidstg_14"])
    assert records[0]["span"] == records[1]["span"] == [0.5, 0.8]
    noted = _noted(drops)
    assert set(noted) == {rid for rid, _ in bad}
    assert noted["vidstg_3"] == "bad tube.tube_end_frame: a frame number beyond any real video (> 10000000)"
    assert noted["vidstg_15"] == "bad segment: not 0 <= start_frame < end_frame <= frame_count"
    assert noted["vidstg_4"] == "bad tube.tube_start_frame: not an integral frame number"
    assert noted["vidstg_9"] == "bad trajectories bbox: negative width or height"
    with pytest.raises(ConvertInputError, match='t2.json: expected "videos"'):
        list(convert_vidstg_tubedetr(_write(tmp_path / "t2.json", {"videos": {}, "trajectories": {}})))


# ---------------------------------------------------------------- VTG
def test_charades_sta_survives_bad_lines(tmp_path):
    ann = tmp_path / "charades.txt"
    ann.write_bytes(
        b"AAAAA 1.0 5.0##person opens a door.\n"  # 1 good
        b"AAAAA 1.0 inf##person runs.\n"  # 2 non-finite end: reported, not clipped
        b"AAAAA nan 5.0##person runs.\n"  # 3
        b"AAAAA -1.0 5.0##person runs.\n"  # 4
        b"AAAAA 1.0 1e400##person runs.\n"  # 5
        b"AAAAA 1.0 5.0##caf\xe9\n"  # 6 not UTF-8
        b"garbage\n"  # 7
        b"AAAAA 1.0 5.0\n"  # 8 no sentence
        b"BBBBB 1.0 5.0##no duration known.\n"  # 9 (its csv length is bad)
        b"AAAAA 2.0 50.0##person closes the door.\n"  # 10 good, clipped to the duration
        b"CCCCC 1.0 2.0##x\n"  # 11 (csv length inf)
    )
    durations = tmp_path / "Charades_v1_test.csv"
    with open(durations, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "length"])
        w.writeheader()
        for vid, length in (("AAAAA", "30.0"), ("BBBBB", "abc"), ("CCCCC", "inf"), ("DDDDD", "-3")):
            w.writerow({"id": vid, "length": length})
    drops = Drops()
    records = _check(list(convert_charades_sta(str(ann), str(durations), drops=drops)), ["charades_1_AAAAA", "charades_10_AAAAA"])
    assert records[1]["span"] == [2.0, 30.0]
    noted = _noted(drops)
    lines = {f"charades_{n}_AAAAA" for n in (2, 3, 4, 5)} | {"charades_6", "charades_7", "charades_8"}
    rows = {"row 3 id=BBBBB", "row 4 id=CCCCC", "row 5 id=DDDDD"}
    assert set(noted) == lines | rows | {"charades_9_BBBBB", "charades_11_CCCCC"}
    assert noted["charades_2_AAAAA"] == noted["charades_5_AAAAA"] == "bad time: not a finite number"


def test_didemo_survives_bad_entries(tmp_path):
    def item(i, **changes):
        base = {"num_segments": 6, "description": "a girl jumps", "times": [[1, 4], [1, 4]], "video": "v.mov", "annotation_id": i}
        base.update(changes)
        return base

    items = [
        item(1),
        7,
        item(3, description=5),
        {k: v for k, v in item(4).items() if k != "description"},
        item(5, times=[[1.5, 2]]),
        item(6, times=[[True, 1]]),
        item(7, times=[]),
        item(8, times=[[1, 2, 3]]),
        item(9, times="x"),
        item(10, num_segments=NAN),
        item(11, num_segments=2.7),
        item(12, video=3),
        item(13, times=[[0, HUGE]]),
        item(14, video="inf.mov"),
        item(15, times=[[3, 1]]),
        item(16, times=[[1.0, 4.0]]),  # good: integral floats
        {k: v for k, v in item(17).items() if k != "annotation_id"},
    ]
    drops = Drops()
    ann, dur = _write(tmp_path / "d.json", items), _write(tmp_path / "dur.json", {"inf.mov": INF})
    records = _check(list(convert_didemo(ann, durations=dur, drops=drops)), ["didemo_1", "didemo_16"])
    assert records[0]["span"] == records[1]["span"] == [5.0, 25.0]
    noted = _noted(drops)
    expected = {f"didemo_{i}" for i in range(3, 16)} | {"didemo[1]", "didemo[16]"}
    assert set(noted) == expected
    assert noted["didemo_5"] == "bad times chunk: not an integral frame number"
    assert noted["didemo_15"] == "bad times: reversed chunk pair"
    assert noted["didemo_14"] == f"bad duration in {dur}: not a finite number"


def test_tacos_survives_bad_entries(tmp_path):
    good = {"timestamps": [[141, 354], [10, 20]], "sentences": ["He takes a knife.", "He cuts."], "fps": 29.4, "num_frames": 7346}
    data = {
        "good.avi": good,
        "mixed.avi": dict(
            good,
            timestamps=[[1, 50], [2.7, 50], [1], [1, 50], [50, 1], [NAN, 3], [0, HUGE], [True, 5], [3.0, 9.0]],
            sentences=["ok", "a", "b", 7, "c", "d", "e", "f", "ok too"],
        ),
        "str_fps.avi": dict(good, fps="29.4"),
        "zero_fps.avi": dict(good, fps=0),
        "frac_frames.avi": dict(good, num_frames=2.5),
        "mismatch.avi": dict(good, sentences=["only one"]),
        "not_dict.avi": [],
        "no_stamps.avi": {k: v for k, v in good.items() if k != "timestamps"},
    }
    drops = Drops()
    good_ids = ["tacos_good_0", "tacos_good_1", "tacos_mixed_0", "tacos_mixed_8"]
    _check(list(convert_tacos(_write(tmp_path / "t.json", data), drops=drops)), good_ids)
    noted = _noted(drops)
    videos = {f"tacos_{s}" for s in ("str_fps", "zero_fps", "frac_frames", "mismatch", "not_dict", "no_stamps")}
    assert set(noted) == videos | {f"tacos_mixed_{k}" for k in range(1, 8)}
    assert noted["tacos_mixed_1"] == "bad timestamps frame: not an integral frame number"
    assert noted["tacos_mixed_3"] == "bad sentences: not a string"


# ---------------------------------------------------------------- RefCOCO
def test_refcoco_survives_bad_entries(tmp_path):
    def ref(i, **changes):
        base = {"ref_id": i, "ann_id": 10, "image_id": 5, "split": "train", "sentences": [{"sent_id": i, "sent": "left man"}]}
        base.update(changes)
        return base

    refs = [
        ref(0),
        "x",
        {k: v for k, v in ref(2).items() if k != "image_id"},
        ref(3, image_id=99),
        ref(4, ann_id=11),  # negative box width
        ref(5, ann_id=12),  # NaN in the box
        ref(6, image_id=6),  # NaN image width
        ref(7, image_id=7),  # no file_name
        ref(8, sentences=[{"sent_id": 80, "sent": 1}, {"sent_id": 81, "sent": "kept"}, "s"]),
        ref(9, sentences={"a": 1}),
        ref(10, split=3),
        ref(11, ref_id=None),
        ref(12, image_id=[5]),
    ]
    instances = {
        "images": [
            {"id": 5, "file_name": "a.jpg", "width": 640, "height": 427},
            {"id": 6, "file_name": "b.jpg", "width": NAN, "height": 427},
            {"id": 7, "width": 640, "height": 427},
            "not an image",
        ],
        "annotations": [
            {"id": 10, "bbox": [10.5, 20.0, 100.0, 200.0]},
            {"id": 11, "bbox": [10.5, 20.0, -100.0, 200.0]},
            {"id": 12, "bbox": [10.5, NAN, 100.0, 200.0]},
            {"bbox": [1, 2, 3, 4]},
        ],
    }
    drops = Drops()
    refs_path, inst_path = _write(tmp_path / "refs.json", refs), _write(tmp_path / "instances.json", instances)
    _check(list(convert_refcoco(refs_path, inst_path, drops=drops)), ["refcoco_0_0", "refcoco_8_81"])
    noted = _noted(drops)
    expected = {"refcoco[1]", "refcoco[10]", "refcoco[11]", "images[3]", "annotations[3]", "refcoco_8_80", "refcoco_8_s2"}
    expected |= {f"refcoco_{i}" for i in (2, 3, 4, 5, 6, 7, 9, 12)}
    assert set(noted) == expected
    assert noted["refcoco_4"] == "bad annotation bbox: negative width or height"
    assert noted["refcoco_8_80"] == "bad sentence sent: not a string"
    with pytest.raises(ConvertInputError, match="refs2.json: expected an array"):
        list(convert_refcoco(_write(tmp_path / "refs2.json", {}), inst_path))


# ---------------------------------------------------------------- whole files and the CLI
@pytest.mark.parametrize(
    "dataset,content",
    [
        ("hcstvg-v1", "{not json"),
        ("hcstvg-v1", "[1, 2]"),
        ("vidstg-tubedetr", "\xff\xfe garbage"),
        ("didemo", '{"a": 1}'),
        ("tacos", "[" * 100000),
        ("tacos", ""),
    ],
)
def test_cli_convert_unreadable_file_is_one_line_exit_2(tmp_path, capsys, dataset, content):
    ann = tmp_path / "broken.json"
    ann.write_bytes(content.encode("latin-1"))
    out = tmp_path / "out.jsonl"
    assert cli.main(["data", "convert", dataset, "--ann", str(ann), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(ann) in lines[0] and lines[0].startswith("llava-st data convert: "), captured.err
    assert "Traceback" not in captured.err and not out.exists()
