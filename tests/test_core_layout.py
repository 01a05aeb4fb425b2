import pytest
import torch

from llava_st.core import GroundingIndex, build_visual_block
from llava_st.core.layout import description_token_positions, find_subsequence


@pytest.mark.parametrize("F,S", [(1, 1), (1, 7), (4, 3), (16, 10), (64, 5)])
def test_interleave_puts_query_after_each_frame(F, S):
    D = 6
    feats = torch.randn(F, S, D)
    queries = torch.randn(F, D)
    block, layout = build_visual_block(feats, queries, "interleave")
    assert block.shape == (F * (S + 1), D)
    assert layout.length == F * (S + 1)
    for f in range(F):
        assert layout.query_index[f].item() == f * (S + 1) + S
        assert torch.equal(block[layout.query_index[f]], queries[f])
        assert torch.equal(block[layout.visual_index[f]], feats[f])
    # every position used exactly once
    used = torch.cat([layout.visual_index.flatten(), layout.query_index])
    assert sorted(used.tolist()) == list(range(layout.length))


@pytest.mark.parametrize("F,S", [(1, 4), (5, 3)])
def test_after_mode_puts_all_queries_after_the_video(F, S):
    feats, queries = torch.randn(F, S, 2), torch.randn(F, 2)
    block, layout = build_visual_block(feats, queries, "after")
    assert layout.query_index.tolist() == list(range(F * S, F * S + F))
    assert torch.equal(block[: F * S], feats.reshape(F * S, 2))
    assert torch.equal(block[layout.query_index], queries)


def test_none_mode_is_upstream_layout():
    feats = torch.randn(3, 4, 2)
    block, layout = build_visual_block(feats, None, "none")
    assert torch.equal(block, feats.reshape(12, 2))
    assert layout.query_index is None


def test_bad_query_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"query_embeds must be \[F=3, D=2\]"):
        build_visual_block(torch.randn(3, 4, 2), torch.randn(2, 2), "interleave")
    with pytest.raises(ValueError, match="unknown query layout"):
        build_visual_block(torch.randn(3, 4, 2), torch.randn(3, 2), "sideways")


def test_collate_shift_and_clip():
    _, a = build_visual_block(torch.randn(2, 3, 1), torch.randn(2, 1))  # L = 8
    _, b = build_visual_block(torch.randn(1, 5, 1), torch.randn(1, 1))  # image-like, L = 6
    idx = GroundingIndex.collate([a.shifted(4), b.shifted(2), None], [[20, 21], [9], None])
    assert idx.visual_index.shape == (3, 2, 5)
    assert idx.query_index.tolist() == [[4 + 3, 4 + 7], [2 + 5, 0], [0, 0]]
    assert idx.frame_mask.tolist() == [[True, True], [True, False], [False, False]]
    assert idx.visual_mask[0].sum() == 6 and idx.visual_mask[1].sum() == 5
    assert idx.text_index.tolist() == [[20, 21], [9, 0], [0, 0]]
    shifted = idx.shift(torch.tensor([10, 0, 3]))
    assert shifted.query_index.tolist() == [[17, 21], [7, 0], [0, 0]]
    assert shifted.text_index[0].tolist() == [30, 31]
    clipped = shifted.clip(20)
    assert clipped.frame_mask.tolist() == [[True, False], [True, False], [False, False]]
    assert clipped.text_mask[0].tolist() == [False, False]


def test_description_positions(qwen_tokenizer):
    text = "<|im_start|>user\nWhere is the man in red who turns his head?<|im_end|>"
    ids = qwen_tokenizer(text)["input_ids"]
    pos = description_token_positions(ids, qwen_tokenizer, "the man in red who turns his head")
    assert pos, "description not found"
    assert qwen_tokenizer.decode([ids[p] for p in pos]).strip() == "the man in red who turns his head"
    assert description_token_positions(ids, qwen_tokenizer, "a purple elephant") == []
    assert find_subsequence([1, 2, 3, 2, 3], [2, 3], start=2) == 3
