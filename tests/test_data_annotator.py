"""Annotator with a tiny random GroundingDINO built offline, and the whole synthesis pipeline from the CLI
(Analyzer on a loopback server -> Annotator -> Refiner -> Filter), resumed on a second run."""

import json

import pytest

from llava_st import cli
from llava_st.data.jsonl import read_jsonl
from llava_st.data.schema import validate_record
from llava_st.data.synth import Dropped
from llava_st.data.synth.annotator import Annotator, read_span_frames
from llava_st.testing.grounding_dino import build_tiny_grounding_dino
from llava_st.testing.openai_replay import ReplayServer


@pytest.fixture(scope="module")
def tiny_gdino(cache_dir):
    return build_tiny_grounding_dino(cache_dir / "tiny-grounding-dino")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, moving_box_video):
    import shutil

    root = tmp_path_factory.mktemp("data")
    shutil.copy(moving_box_video[0], root / "box.mp4")
    return root


def test_read_span_frames(data_root):
    frames, times, fps, duration = read_span_frames(str(data_root / "box.mp4"), (1.0, 2.95), sample_fps=2.0)
    assert fps == 10.0 and duration == 4.0
    assert times.tolist() == [1.0, 1.5, 2.0, 2.5] and frames.shape == (4, 64, 96, 3)


def test_annotator_boxes_inside_span(tiny_gdino, data_root):
    record = {"id": "a1", "video": "box.mp4", "span": [1.0, 2.9], "target": "a red box", "caption": "a red box moves"}
    out = Annotator(tiny_gdino, data_root=str(data_root), sample_fps=2.0, box_threshold=0.0, batch_size=3)(record)
    assert (out["width"], out["height"], out["fps"], out["duration"]) == (96, 64, 10.0, 4.0)
    assert [d["t"] for d in out["detections"]] == [1.0, 1.5, 2.0, 2.5]
    for d in out["detections"]:
        assert len(d["boxes"]) == len(d["scores"]) > 0
        assert d["scores"] == sorted(d["scores"], reverse=True)
        for x0, y0, x1, y1 in d["boxes"]:
            assert 0 <= x0 <= x1 <= 96 and 0 <= y0 <= y1 <= 64
    strict = Annotator(tiny_gdino, data_root=str(data_root), sample_fps=2.0, box_threshold=0.3)(record)
    all_scores = [s for d in strict["detections"] for s in d["scores"]]
    assert all(s >= 0.3 for s in all_scores)
    loose_scores = [s for d in out["detections"] for s in d["scores"]]
    assert len(all_scores) == sum(s >= 0.3 for s in loose_scores)


def test_annotator_missing_video_is_dropped_by_id(tiny_gdino, data_root, caplog):
    annotator = Annotator(tiny_gdino, data_root=str(data_root))
    with pytest.raises(Dropped, match="video unreadable"):
        annotator({"id": "gone", "video": "nope.mp4", "span": [0, 1], "target": "man"})
    assert "id=gone field=video" in caplog.text and "nope.mp4" in caplog.text


def test_annotator_never_reads_outside_the_data_root(tiny_gdino, data_root, tmp_path, caplog):
    """`..`, absolute paths and links leading out of the data root are dropped, named by id and field."""
    import shutil

    outside = tmp_path / "outside.mp4"
    shutil.copy(data_root / "box.mp4", outside)
    link = data_root / "escape.mp4"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    annotator = Annotator(tiny_gdino, data_root=str(data_root))
    try:
        for n, path in enumerate(["escape.mp4", f"../{tmp_path.name}/outside.mp4", str(outside), "a\x00.mp4", None]):
            with pytest.raises(Dropped, match="path outside data root") as dropped:
                annotator({"id": f"p{n}", "video": path, "span": [1.0, 2.0], "target": "a red box"})
            assert dropped.value.detail.startswith("field=video: ")  # logged once by stage.apply_stage with file, line and id
    finally:
        link.unlink()


def test_pipeline_cli_end_to_end_and_resume(tmp_path, tiny_gdino, data_root, capsys):
    src = tmp_path / "vtg.jsonl"
    with open(src, "w") as f:
        for i in range(4):
            f.write(
                json.dumps(
                    {
                        "id": f"v{i}",
                        "task": "vtg",
                        "video": "box.mp4",
                        "caption": "a red box slides right",
                        "span": [0.0, 3.9],
                        "duration": 4.0,
                        "source": "test",
                    }
                )
                + "\n"
            )
    work = tmp_path / "work"
    with ReplayServer(['{"subject": "red box", "objects": []}'] * 3 + ["not json"]) as server:
        argv = [
            "data",
            "synth",
            "run",
            str(src),
            str(work),
            "--endpoint",
            server.url,
            "--model",
            "m",
            "--detector",
            tiny_gdino,
            "--data-root",
            str(data_root),
            "--fps",
            "2",
            "--box-threshold",
            "0.0",
            "--max-boxes",
            "10",
        ]
        assert cli.main(argv) == 0
        text = capsys.readouterr().out
        # A second run finds every stage done: no request reaches the server, nothing is rewritten.
        assert cli.main(argv) == 0
        assert len(server.requests) == 4
    assert "analyze: kept 3, dropped 1 (malformed analyzer answer: 1)" in text
    assert "annotate: kept 3" in text and "refine: kept 3" in text  # a random detector fires on every frame
    final = list(read_jsonl(work / "4_filter.jsonl"))
    dropped = list(read_jsonl(work / "4_filter.jsonl.dropped.jsonl"))
    assert len(final) + len(dropped) == 3 and final  # every record is accounted for
    for r in final:
        assert validate_record(r, data_root=data_root) == [] and r["task"] == "stvg" and r["target"] == "red box"
        assert r["span"] == [0.0, 3.5] and [b["t"] for b in r["boxes"]] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert "resumed past 4" in capsys.readouterr().out
    assert list(read_jsonl(work / "4_filter.jsonl")) == final
