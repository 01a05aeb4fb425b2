"""transformers host: training drives both losses down, checkpoints round-trip, generation gives tubes."""

import os

import pytest
import torch

from llava_st.core.config import STConfig
from llava_st.core.timespan import parse_span
from llava_st.data.templates import instruction
from llava_st.hosts.hf import load_st_model, save_st_model
from llava_st.hosts.hf.data import STCollator, STDataset
from llava_st.hosts.hf.grounder import HFGrounder
from llava_st.hosts.hf.train import train_hf
from llava_st.testing.hf import build_tiny_st

pytestmark = pytest.mark.slow  # one 60-step training shared by the module (~30 s CPU)

CAPTION = "the red box moving right"
FRAMES = 4


def stvg_record(video_path, boxes):
    """The moving-box video as one STVG record (box visible on frames 10..29 at 10 fps)."""
    return {
        "id": "box-0",
        "task": "stvg",
        "video": os.path.basename(video_path),
        "caption": CAPTION,
        "span": [1.0, 2.9],
        "boxes": [{"t": t / 10, "xyxy": boxes[t].tolist()} for t in range(10, 30)],
        "conversations": [{"from": "human", "value": "<image>\n" + instruction("stvg", CAPTION)}, {"from": "gpt", "value": ""}],
        "width": 96,
        "height": 64,
        "duration": 4.0,
        "fps": 10.0,
    }


@pytest.fixture(scope="module")
def trained(qwen_tokenizer, moving_box_video):
    path, boxes = moving_box_video
    model, processor = build_tiny_st(qwen_tokenizer, STConfig(num_queries=8), seed=0)
    result = train_hf(
        model, [stvg_record(path, boxes)], os.path.dirname(path), processor=processor, frames=FRAMES,
        max_steps=60, learning_rate=5e-3, lr_scheduler_type="constant", logging_steps=10, disable_tqdm=True,
    )
    return result, path, boxes


def test_overfitting_one_stvg_sample_drives_text_and_space_loss_down(trained):
    result, _, _ = trained
    logs = [h for h in result.log_history if "loss_text" in h]
    first, last = logs[0], logs[-1]
    assert last["loss_text"] < 0.25 * first["loss_text"]
    assert last["loss_l1"] < 0.7 * first["loss_l1"]
    assert last["loss_giou"] < first["loss_giou"]


def test_generate_returns_a_tube_whose_span_parses(trained):
    result, path, _ = trained
    (tube,) = HFGrounder(result.model, result.processor, frames=FRAMES).ground(path, [CAPTION])
    assert tube["status"] == "ok", tube["raw_text"]
    assert parse_span(tube["raw_text"]).ok
    assert tube["frames"], "a parsed span must contain sampled frames"
    for frame in tube["frames"]:
        assert tube["span"][0] - 1e-6 <= frame["t"] <= tube["span"][1] + 1e-6
        x0, y0, x1, y1 = frame["box_xyxy"]
        assert 0 <= x0 <= x1 <= 96 and 0 <= y0 <= y1 <= 64


def test_save_load_round_trip_reproduces_boxes_exactly(trained, tmp_path):
    result, path, boxes = trained
    save_st_model(result.model, result.processor, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    _, loaded, processor = load_st_model(tmp_path / "ckpt")
    assert loaded.config.st_query_token_ids == result.model.config.st_query_token_ids
    assert processor.query_token_ids == result.processor.query_token_ids
    batch = STCollator(processor.tokenizer.pad_token_id)(
        [STDataset([stvg_record(path, boxes)], os.path.dirname(path), processor, frames=FRAMES)[0]])
    with torch.no_grad():
        a = result.model(**batch).pred_boxes
        b = loaded(**batch).pred_boxes
    assert torch.equal(a, b)
    tube_a = HFGrounder(result.model, result.processor, frames=FRAMES).ground(path, [CAPTION])
    tube_b = HFGrounder(loaded, processor, frames=FRAMES).ground(path, [CAPTION])
    assert tube_a == tube_b


def test_bad_record_is_skipped_with_its_id_and_field(trained, caplog):
    result, path, boxes = trained
    bad = dict(stvg_record(path, boxes), id="broken-7", video="missing.mp4")
    dataset = STDataset([bad, stvg_record(path, boxes)], os.path.dirname(path), result.processor, frames=FRAMES)
    item = dataset[0]
    assert "pixel_values_videos" in item
    assert "broken-7" in caplog.text and "'video'" in caplog.text


def test_train_hf_converts_a_plain_checkpoint_and_saves_a_loadable_st_one(qwen_tokenizer, moving_box_video, tmp_path):
    from llava_st.api import load_grounder
    from llava_st.hosts.hf import is_st_checkpoint
    from llava_st.testing.hf import save_tiny_onevision

    path, boxes = moving_box_video
    base = save_tiny_onevision(tmp_path / "base", qwen_tokenizer)
    st = STConfig(num_queries=4, query_mode="after", decoder_projections=True)
    result = train_hf(base, [stvg_record(path, boxes)], os.path.dirname(path), tmp_path / "st", st=st, frames=FRAMES, max_steps=2,
                      disable_tqdm=True)
    assert result.model.config.st == st and is_st_checkpoint(tmp_path / "st")
    grounder = load_grounder(tmp_path / "st", max_new_tokens=2)
    assert grounder.model.config.st == st and grounder.processor.query_mode == "after"
    with pytest.raises(ValueError, match="was built with"):
        train_hf(tmp_path / "st", [stvg_record(path, boxes)], os.path.dirname(path), st=STConfig(num_queries=8), max_steps=1)


def test_logits_at_labels_only_gives_the_base_loss_and_gradients(qwen_tokenizer, moving_box_video):
    """train_hf's speed-up (the LM head only at answer tokens) must not change the loss or its gradients.
    A batch of two with right padding, so the attention-mask shift of the base loss is exercised."""
    path, boxes = moving_box_video
    model, processor = build_tiny_st(qwen_tokenizer, STConfig(num_queries=8), seed=0)
    long = dict(stvg_record(path, boxes), id="box-1", caption=CAPTION + " fast")
    long["conversations"] = [{"from": "human", "value": "<image>\n" + instruction("stvg", long["caption"])}, {"from": "gpt", "value": ""}]
    dataset = STDataset([stvg_record(path, boxes), long], os.path.dirname(path), processor, frames=FRAMES)
    batch = STCollator(processor.tokenizer.pad_token_id)([dataset[0], dataset[1]])
    assert not bool(batch["attention_mask"].all()), "the batch should hold padding"

    def loss_and_grads(sparse):
        model.zero_grad()
        model.logits_at_labels_only = sparse
        out = model(**batch)
        out.loss_text.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return out, grads

    full, full_grads = loss_and_grads(False)
    sparse, sparse_grads = loss_and_grads(True)
    model.logits_at_labels_only = False
    assert full.logits is not None and sparse.logits is None
    torch.testing.assert_close(sparse.loss_text, full.loss_text, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sparse.loss, full.loss, rtol=1e-5, atol=1e-6)
    assert sparse_grads.keys() == full_grads.keys()
    for name, grad in full_grads.items():
        torch.testing.assert_close(sparse_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_train_hf_writes_the_bad_samples_summary(qwen_tokenizer, moving_box_video, tmp_path):
    """The same bad_samples_summary.json as the LLaVA-NeXT host: records dropped at load and samples
    replaced when read, counted by kind."""
    import json

    path, boxes = moving_box_video
    model, processor = build_tiny_st(qwen_tokenizer, STConfig(num_queries=8), seed=0)
    good = stvg_record(path, boxes)
    records = [good, dict(good, id="reversed", span=[2.9, 1.0]), dict(good, id="gone", video="missing.mp4")]
    train_hf(model, records, os.path.dirname(path), tmp_path / "out", processor=processor, frames=FRAMES, max_steps=3, disable_tqdm=True)
    summary = json.loads((tmp_path / "out" / "bad_samples_summary.json").read_text())
    assert summary == {"total": 2, "by_kind": {"invalid record": 1, "missing file": 1}}
    entries = [json.loads(line) for line in (tmp_path / "out" / "bad_samples.jsonl").read_text().splitlines()]
    assert {e["id"] for e in entries} == {"reversed", "gone"}
