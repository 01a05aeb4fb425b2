"""transformers host: the processor lays out queries exactly where the model's features land."""

import numpy as np
import pytest
import torch

from llava_st.core.config import STConfig
from llava_st.hosts.hf import ImageSegment, LlavaSTOnevisionConfig, VideoSegment
from llava_st.testing.hf import build_tiny_st


def _frames(n, h=40, w=60, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny(qwen_tokenizer):
    return build_tiny_st(qwen_tokenizer, STConfig(num_queries=8))


def _embeds(model, **inputs):
    with torch.no_grad():
        return model(**inputs, output_hidden_states=True)


def test_video_queries_follow_each_frame_and_features_land_on_visual_positions(tiny):
    model, proc = tiny
    F, P = 3, proc.tokens_per_frame
    assert P == 4  # 32 px / patch 8 -> 4 x 4 grid -> 2 x 2 after pooling
    ids, (layout,) = proc.encode_with_layouts(["a video ", VideoSegment(F), " the red box"])
    assert ids == proc.encode(["a video ", VideoSegment(F), " the red box"])
    input_ids = torch.tensor([ids])
    out = _embeds(model, input_ids=input_ids, pixel_values_videos=proc.video_pixels(_frames(F))[None])
    (located,) = model.block_layouts(input_ids)  # a caller without the processor's layout gets the same positions
    assert torch.equal(located.visual_index, layout.visual_index) and torch.equal(located.query_index, layout.query_index)
    assert layout.newline_index.tolist() == [int(layout.query_index[-1]) + 1]
    q = model.config.st_query_token_ids
    assert layout.visual_index.shape == (F, P)
    for f in range(F):
        assert ids[layout.query_index[f]] == q[f]
        assert layout.query_index[f] == layout.visual_index[f, -1] + 1
        assert all(ids[i] == model.config.video_token_index for i in layout.visual_index[f].tolist())
        # the model's own scatter put frame f's pooled features exactly there
        torch.testing.assert_close(out.hidden_states[0][0, layout.visual_index[f]], out.video_hidden_states[f * P : (f + 1) * P])
    # the video's single newline comes after the last query
    assert ids[int(layout.query_index[-1]) + 1] == model.config.video_token_index
    assert out.pred_boxes.shape == (1, F, 4)


@pytest.mark.parametrize("hw", [(50, 70), (64, 32), (32, 32), (90, 20)])
def test_image_terminal_query_after_image_tokens(tiny, hw):
    model, proc = tiny
    image = _frames(1, *hw)[0]
    batch = proc(text="look <image> at the dog", images=[image])
    out = _embeds(model, **batch)  # raises if the token count differs from the model's features
    (layout,) = model.block_layouts(batch["input_ids"])
    assert batch["grounding_query_index"].tolist() == [layout.query_index.tolist()]
    assert batch["grounding_visual_index"][0, 0].tolist() == layout.visual_index[0].tolist()
    ids = batch["input_ids"][0]
    assert ids[layout.query_index[0]] == model.config.st_query_token_ids[-1]
    assert layout.query_index[0] == layout.visual_index[0, -1] + 1
    torch.testing.assert_close(out.hidden_states[0][0, layout.visual_index[0]], out.image_hidden_states)
    assert out.pred_boxes.shape == (1, 1, 4)


def test_padded_batch_of_videos_keeps_positions_per_item(tiny):
    model, proc = tiny
    batch = proc(text=["<video> short", "a much longer prefix before the <video> and after"], videos=[_frames(2), _frames(2, seed=1)])
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()
    index = model.grounding_index(batch["input_ids"])
    for key in ("visual_index", "visual_mask", "query_index", "frame_mask"):  # the processor's index is the located one
        assert torch.equal(batch[f"grounding_{key}"], getattr(index, key))
    out = _embeds(model, **batch)
    for b in range(2):
        assert index.frame_mask[b].all()
        for f in range(2):
            pos = index.visual_index[b, f]
            feats = out.video_hidden_states[b * 9 + f * 4 : b * 9 + (f + 1) * 4]  # 2 frames x 4 + newline per video
            torch.testing.assert_close(out.hidden_states[0][b, pos], feats)
            assert batch["input_ids"][b, index.query_index[b, f]] == model.config.st_query_token_ids[f]


def test_after_mode_puts_queries_after_the_video(qwen_tokenizer):
    model, proc = build_tiny_st(qwen_tokenizer, STConfig(num_queries=4, query_mode="after"))
    ids, (layout,) = proc.encode_with_layouts([VideoSegment(3), "x"])
    (located,) = model.block_layouts(torch.tensor([ids]))
    for lay in (layout, located):
        assert lay.query_index.tolist() == [13, 14, 15]  # 3 frames x 4 tokens + newline, then r_0..r_2
        assert lay.visual_index.reshape(-1).tolist() == list(range(12))
        assert lay.newline_index.tolist() == [12]
    assert ids[13:16] == model.config.st_query_token_ids[:3] and ids[12] == model.config.video_token_index


def test_none_mode_has_no_queries_and_no_decoder(qwen_tokenizer):
    model, proc = build_tiny_st(qwen_tokenizer, STConfig(num_queries=4, query_mode="none"))
    ids = proc.encode([VideoSegment(2), ImageSegment(32, 32)])
    assert not set(ids) & set(model.config.st_query_token_ids)
    assert model.space_decoder is None


def test_wrong_expansion_is_a_clear_error(tiny):
    model, proc = tiny
    ids = proc.encode([VideoSegment(2)])
    ids.remove(model.config.video_token_index)
    with pytest.raises(ValueError, match="video tokens"):
        model(input_ids=torch.tensor([ids]), pixel_values_videos=proc.video_pixels(_frames(2))[None])


def test_an_index_that_does_not_match_the_ids_is_a_clear_error(tiny):
    model, proc = tiny
    batch = proc(text=["<video> a", "b <video> c"], videos=[_frames(2), _frames(2, seed=1)])
    batch["grounding_query_index"] = batch["grounding_query_index"].flip(0)  # item 0 gets item 1's positions
    with pytest.raises(ValueError, match="does not match input_ids"):
        model(**batch)
    ids = proc.encode([VideoSegment(2)])
    ids[4], ids[9] = ids[9], ids[4]  # r_0 and r_1 swapped
    with pytest.raises(ValueError, match="not the 'interleave' layout"):
        model.block_layouts(torch.tensor([ids]))


def test_config_rejects_bad_options():
    with pytest.raises(ValueError, match="query_mode"):
        LlavaSTOnevisionConfig(st_query_mode="sideways")
    with pytest.raises(ValueError, match="st_query_token_ids"):
        LlavaSTOnevisionConfig(st_num_queries=4, st_query_token_ids=[1, 2])
