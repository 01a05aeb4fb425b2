"""Python API and `llava-st ground` over a tiny transformers-host checkpoint: host detection, the shared
video-prefix KV cache, CLI outputs and clear errors."""

import csv
import json

import numpy as np
import pytest
import torch
from transformers import DynamicCache

from llava_st.api import NotAnSTCheckpoint, load_grounder, main
from llava_st.cli import main as cli_main
from llava_st.core.config import STConfig
from llava_st.data.video import VideoReadError
from llava_st.hosts.hf import VideoSegment
from llava_st.hosts.hf.grounder import HFGrounder
from llava_st.testing.hf import build_tiny_st

FRAMES = 4


@pytest.fixture(scope="module")
def checkpoint(qwen_tokenizer, tmp_path_factory):
    out = tmp_path_factory.mktemp("st-hf") / "ckpt"
    build_tiny_st(qwen_tokenizer, STConfig(num_queries=8), out_dir=out)
    return out


@pytest.fixture(scope="module")
def grounder(checkpoint):
    return load_grounder(checkpoint, max_new_tokens=6)


def test_load_grounder_detects_the_transformers_host(grounder):
    assert isinstance(grounder, HFGrounder)
    assert grounder.frames == 8  # default: the model's number of video queries


def test_several_descriptions_equal_separate_calls(grounder, moving_box_video):
    path, _ = moving_box_video
    queries = ["the red box", "the grey background on the left"]
    times, _, together = grounder.predict_video(path, queries, frames=FRAMES)
    separate = [grounder.predict_video(path, [q], frames=FRAMES)[2][0] for q in queries]
    assert len(times) == FRAMES
    for (text_a, boxes_a), (text_b, boxes_b) in zip(together, separate):
        assert text_a == text_b
        assert boxes_a.shape == (FRAMES, 4)
        assert torch.equal(boxes_a, boxes_b)
    assert not torch.equal(together[0][1], together[1][1]), "boxes must depend on the description"
    assert grounder.ground(path, queries, frames=FRAMES) == [grounder.ground(path, [q], frames=FRAMES)[0] for q in queries]


def test_cropped_prefix_cache_matches_a_full_forward(grounder, moving_box_video):
    """The mechanism behind KV reuse: a suffix run on the cropped prefix cache sees the same states as
    the whole prompt run at once."""
    model, proc = grounder.model, grounder.processor
    frames = np.random.default_rng(0).integers(0, 256, size=(FRAMES, 40, 60, 3), dtype=np.uint8)
    pixels = proc.video_pixels(frames)[None]
    prefix = proc.encode(["<|im_start|>user\n", VideoSegment(FRAMES), "\n"])
    suffix_a, suffix_b = proc.encode(["find the dog"]), proc.encode(["find the red box please"])
    with torch.no_grad():
        cache = DynamicCache()
        model(input_ids=torch.tensor([prefix]), pixel_values_videos=pixels, past_key_values=cache, use_cache=True)
        model(input_ids=torch.tensor([suffix_a]), past_key_values=cache, use_cache=True)
        cache.crop(len(prefix))
        cached = model(input_ids=torch.tensor([suffix_b]), past_key_values=cache, use_cache=True, output_hidden_states=True)
        full = model(input_ids=torch.tensor([prefix + suffix_b]), pixel_values_videos=pixels, output_hidden_states=True)
    torch.testing.assert_close(cached.hidden_states[-1][0], full.hidden_states[-1][0, len(prefix) :], atol=1e-5, rtol=1e-4)


def test_ground_image_gives_one_box_at_time_zero(grounder, tmp_path):
    from PIL import Image

    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(48, 80, 3), dtype=np.uint8)).save(image)
    (tube,) = grounder.ground_image(str(image), ["the left cup"])
    assert tube["span"] == [0.0, 0.0] and tube["status"] == "ok"
    (frame,) = tube["frames"]
    assert frame["t"] == 0.0
    x0, y0, x1, y1 = frame["box_xyxy"]
    assert 0 <= x0 <= x1 <= 80 and 0 <= y0 <= y1 <= 48


def test_cli_ground_writes_json_csv_and_viz(checkpoint, moving_box_video, tmp_path):
    path, _ = moving_box_video
    args = ["ground", "--model", str(checkpoint), "--video", path, "--query", "the red box", "--query", "a wall", "--frames", str(FRAMES)]
    assert cli_main(args + ["--out", str(tmp_path / "t.json"), "--viz", str(tmp_path / "t.mp4")]) == 0
    tubes = json.loads((tmp_path / "t.json").read_text())
    assert [t["query"] for t in tubes] == ["the red box", "a wall"]
    assert set(tubes[0]) == {"query", "span", "frames", "video", "raw_text", "status"}
    assert tubes[0]["video"]["width"] == 96 and tubes[0]["video"]["height"] == 64
    assert (tmp_path / "t.mp4").stat().st_size > 0
    assert main(args[1:] + ["--out", str(tmp_path / "t.csv")]) == 0
    rows = list(csv.reader((tmp_path / "t.csv").open()))
    assert rows[0] == ["query_id", "time_ms", "x0", "y0", "x1", "y1"]


def test_clear_errors(grounder, checkpoint, tiny_qwen2_dir, tmp_path, moving_box_video, capsys):
    path, _ = moving_box_video
    with pytest.raises(VideoReadError, match="not found.*nope.mp4"):
        grounder.ground(str(tmp_path / "nope.mp4"), ["x"])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    with pytest.raises(VideoReadError, match="cannot decode.*broken.mp4"):
        grounder.ground(str(broken), ["x"])
    with pytest.raises(ValueError, match="description 1 is empty"):
        grounder.ground(path, ["fine", "  "])
    with pytest.raises(NotAnSTCheckpoint, match="'qwen2' model, not a llava_st model"):
        load_grounder(tiny_qwen2_dir)
    with pytest.raises(NotAnSTCheckpoint, match="no config.json"):
        load_grounder(tmp_path)
    assert main(["--model", str(checkpoint), "--video", str(broken), "--query", "x"]) == 2
    assert "cannot decode" in capsys.readouterr().err


def test_checkpoint_loads_through_transformers_auto_classes(checkpoint):
    from transformers import AutoConfig, AutoModelForVision2Seq

    import llava_st.hosts.hf  # noqa: F401  (registers the model type)
    from llava_st.hosts.hf import LlavaSTOnevisionConfig, LlavaSTOnevisionForConditionalGeneration

    assert isinstance(AutoConfig.from_pretrained(checkpoint), LlavaSTOnevisionConfig)
    assert isinstance(AutoModelForVision2Seq.from_pretrained(checkpoint), LlavaSTOnevisionForConditionalGeneration)


def test_answer_returns_text_and_refuses_an_empty_question(grounder, moving_box_video):
    path, _ = moving_box_video
    assert isinstance(grounder.answer(path, "What moves?", max_new_tokens=3, frames=FRAMES), str)
    with pytest.raises(ValueError, match="empty"):
        grounder.answer(path, "")


@pytest.mark.upstream
def test_load_grounder_detects_the_llava_next_host(qwen_tokenizer, tiny_siglip_repo, moving_box_video, tmp_path):
    from llava_st.hosts.llava_next.grounder import LlavaNextGrounder
    from llava_st.hosts.llava_next.loading import save_st_model
    from llava_st.testing.upstream import tiny_llava_st_qwen

    tokenizer, model = tiny_llava_st_qwen(qwen_tokenizer, tiny_siglip_repo, num_queries=4)
    path = save_st_model(model, tokenizer, tmp_path / "llava-st-qwen-tiny")
    grounder = load_grounder(path, frames=2)
    assert isinstance(grounder, LlavaNextGrounder)
    (tube,) = grounder.ground(moving_box_video[0], ["the red box"], frames=2)
    assert set(tube) == {"query", "span", "frames", "video", "raw_text", "status"}
    with pytest.raises(ValueError, match="from 1 to 4"):
        grounder.ground(moving_box_video[0], ["the red box"], frames=5)  # beyond the queries: refused, not clipped


@pytest.mark.upstream
def test_llava_next_checkpoint_of_the_other_host_or_foreign_weights_is_one_error(
    qwen_tokenizer, tiny_siglip_repo, checkpoint, tmp_path, capsys
):
    import shutil

    from llava_st.hosts.checkpoint import CheckpointError
    from llava_st.hosts.llava_next.loading import save_st_model
    from llava_st.testing.upstream import tiny_llava_st_qwen

    tokenizer, model = tiny_llava_st_qwen(qwen_tokenizer, tiny_siglip_repo, num_queries=4)
    path = save_st_model(model, tokenizer, tmp_path / "llava-st-qwen-tiny")
    other = shutil.copytree(path, tmp_path / "as-onevision")
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "llava_st_onevision"}))
    foreign = shutil.copytree(path, tmp_path / "llava-st-qwen-foreign")
    shutil.copy(checkpoint / "model.safetensors", foreign / "model.safetensors")  # the transformers host's weights
    for directory in (other, foreign):
        with pytest.raises(CheckpointError):
            load_grounder(directory)
        assert main(["--model", str(directory), "--image", str(tmp_path / "x.png"), "--query", "x"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("llava-st ground: error: "), err


def _set_model_type(directory, model_type):
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "model_type": model_type}))


def _broken_copies(checkpoint, root):
    """(name, directory, words the error line must contain) for every bad checkpoint of issue 15."""
    import os
    import shutil

    weights = "model.safetensors"

    def truncate(d):
        with open(d / weights, "r+b") as f:
            f.truncate(os.path.getsize(d / weights) // 2)

    def corrupt_entry(d):  # a header that claims a tensor of another size
        import struct

        raw = (d / weights).read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        name = next(k for k in header if k != "__metadata__")
        header[name]["shape"] = [s + 1 for s in header[name]["shape"]]
        text = json.dumps(header).encode()
        (d / weights).write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])

    edits = {
        "truncated": (truncate, "truncated"),
        "empty": (lambda d: (d / weights).write_bytes(b""), "empty (0 bytes)"),
        "garbage": (lambda d: (d / weights).write_bytes(np.random.default_rng(0).bytes(4096)), "not a safetensors file"),
        "json-garbage": (lambda d: (d / weights).write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00[1,2]"), "header is not a JSON object"),
        "wrong-size": (corrupt_entry, "corrupt: tensor"),
        "no-weights": (lambda d: (d / weights).unlink(), "no weights"),
        "bare-bin": (lambda d: (d / weights).rename(d / "pytorch_model.bin"), "only from safetensors"),
        "no-tokenizer": (lambda d: [(d / f).unlink() for f in ("tokenizer.json", "vocab.json", "merges.txt")], "no tokenizer"),
        "no-preprocessor": (lambda d: (d / "preprocessor_config.json").unlink(), "preprocessor_config.json"),
        "config-list": (lambda d: (d / "config.json").write_text("[1, 2]"), "must hold a JSON object, got list"),
        "config-garbage": (lambda d: (d / "config.json").write_bytes(b"\xff\xfe{"), "not valid JSON"),
        "other-host": (lambda d: _set_model_type(d, "llava_st_qwen"), "llava_st_qwen"),
    }
    out = []
    for name, (edit, words) in edits.items():
        d = root / name
        shutil.copytree(checkpoint, d)
        edit(d)
        out.append((name, d, words))
    return out


def test_cli_ground_bad_inputs_end_in_one_error_line(checkpoint, moving_box_video, tmp_path, capsys):
    """Every bad input of issue 15's list: one line on stderr, exit code 2, no traceback."""
    path, _ = moving_box_video
    (tmp_path / "outdir").mkdir()
    (tmp_path / "a_file").write_text("x")
    cases = [(d, [], words) for _, d, words in _broken_copies(checkpoint, tmp_path / "ckpts")]
    cases += [
        (tmp_path / "nowhere", [], "no such directory"),
        (checkpoint, ["--out", str(tmp_path / "outdir")], "is a directory"),
        (checkpoint, ["--out", str(tmp_path / "a_file" / "t.json")], "is a file, not a directory"),
        (checkpoint, ["--viz", str(tmp_path / "outdir")], "is a directory"),
        (checkpoint, ["--device", "bogus"], "not a torch device"),
        (checkpoint, ["--device", "cuda:7"], "cuda"),
        (checkpoint, ["--frames", "0"], "from 1 to 8"),
        (checkpoint, ["--frames", "-1"], "from 1 to 8"),
        (checkpoint, ["--frames", "9"], "from 1 to 8"),
        (checkpoint, ["--frames", "100000"], "from 1 to 8"),
        (checkpoint, ["--image", str(tmp_path / "nope.png")], "nope.png"),
    ]
    if not torch.cuda.is_available():
        cases.append((checkpoint, ["--device", "cuda"], "no CUDA GPU"))
    for model, extra, words in cases:
        media = [] if "--image" in extra else ["--video", path]
        code = main(["--model", str(model), *media, "--query", "the red box", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, (model, extra)
        assert len(err) == 1 and err[0].startswith("llava-st ground: error: ") and words in err[0], (model, extra, err)
    assert not list((tmp_path / "outdir").iterdir())  # nothing written for a refused run


def test_weights_load_only_from_safetensors(checkpoint, monkeypatch):
    """use_safetensors=True reaches transformers' loader on both hosts' load paths."""
    from llava_st.hosts.hf.modeling import LlavaSTOnevisionForConditionalGeneration

    seen = {}
    original = LlavaSTOnevisionForConditionalGeneration.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.update(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(LlavaSTOnevisionForConditionalGeneration, "from_pretrained", classmethod(spy))
    load_grounder(checkpoint)
    assert seen.get("use_safetensors") is True


def test_frames_are_checked_before_any_video_is_read(grounder, tmp_path):
    """0, -1 and more frames than queries are refused up front (a missing video would fail later)."""
    missing = str(tmp_path / "not-read.mp4")
    for frames in (0, -1, 9, 100000, 2.5, True):
        with pytest.raises(ValueError, match="frames must be"):
            grounder.ground(missing, ["x"], frames=frames)
        with pytest.raises(ValueError, match="frames must be"):
            grounder.answer(missing, "what?", frames=frames)
    with pytest.raises(ValueError, match="from 1 to 8"):
        HFGrounder(grounder.model, grounder.processor, frames=0)
    with pytest.raises(VideoReadError):
        grounder.ground(missing, ["x"], frames=8)  # in range: then the video is looked at


def test_sharded_safetensors_are_checked_shard_by_shard(checkpoint, tmp_path):
    import shutil

    from llava_st.hosts.checkpoint import CheckpointError, check_weights, safetensors_header

    d = shutil.copytree(checkpoint, tmp_path / "sharded")
    names = list(safetensors_header(d / "model.safetensors"))
    (d / "model.safetensors").rename(d / "model-00001-of-00001.safetensors")
    index = {"metadata": {}, "weight_map": {n: "model-00001-of-00001.safetensors" for n in names}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    assert sorted(check_weights(d)) == sorted(names)
    assert isinstance(load_grounder(d), HFGrounder)
    index["weight_map"][names[0]] = "../outside.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="must be a file name"):
        check_weights(d)
    index["weight_map"][names[0]] = "model-00002-of-00002.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors: cannot read"):
        check_weights(d)
    (d / "model.safetensors.index.json").write_text("[]")
    with pytest.raises(CheckpointError, match="not a safetensors index"):
        check_weights(d)
