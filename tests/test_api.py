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
    import llava_st.hosts.hf  # noqa: F401  (registers the model type)
    from transformers import AutoConfig, AutoModelForVision2Seq

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
    from llava_st.hosts.llava_next.loader import save_st_model
    from llava_st.testing.upstream import tiny_llava_st_qwen

    tokenizer, model = tiny_llava_st_qwen(qwen_tokenizer, tiny_siglip_repo, num_queries=4)
    path = save_st_model(model, tokenizer, tmp_path / "llava-st-qwen-tiny")
    grounder = load_grounder(path, frames=2)
    assert isinstance(grounder, LlavaNextGrounder)
    (tube,) = grounder.ground(moving_box_video[0], ["the red box"], frames=2)
    assert set(tube) == {"query", "span", "frames", "video", "raw_text", "status"}
