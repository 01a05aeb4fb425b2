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


@pytest.mark.parametrize("mode", ["interleave", "after", "none"])
@pytest.mark.parametrize("F,S,K", [(1, 1, 0), (3, 4, 1), (2, 5, 2)])
def test_block_layout_places_every_token_once_with_the_newline_rule(mode, F, S, K):
    from llava_st.core import block_layout, layout_ids

    layout = block_layout(F, S, mode, newlines=K)
    queries = [] if layout.query_index is None else layout.query_index.tolist()
    used = layout.visual_index.flatten().tolist() + queries + layout.newline_index.tolist()
    assert sorted(used) == list(range(layout.length)) and layout.length == F * S + K + (0 if mode == "none" else F)
    newline = {"interleave": F * (S + 1), "after": F * S, "none": F * S}[mode]
    assert layout.newline_index.tolist() == list(range(newline, newline + K))
    if mode == "after":  # the queries follow the whole block, its newlines included
        assert queries == list(range(F * S + K, F * S + K + F))
    if mode == "interleave":  # the newlines stay last
        assert queries == [f * (S + 1) + S for f in range(F)]
    ids = layout_ids(layout, 7, [100 + f for f in range(F)])
    assert [ids[p] for p in queries] == ([100 + f for f in range(F)] if queries else [])
    assert sum(i == 7 for i in ids) == F * S + K
    # build_visual_block scatters features, newlines and queries at exactly these positions
    feats, nl, q = torch.randn(F, S, 3), torch.randn(K, 3), torch.randn(F, 3)
    block, built = build_visual_block(feats, q, mode, nl if K else None)
    assert torch.equal(built.visual_index, layout.visual_index) and torch.equal(built.newline_index, layout.newline_index)
    assert torch.equal(block[layout.visual_index], feats) and torch.equal(block[layout.newline_index], nl)
    if queries:
        assert torch.equal(block[layout.query_index], q)
    shifted = layout.shifted(10)
    assert shifted.newline_index.tolist() == [p + 10 for p in layout.newline_index.tolist()]


def test_block_layout_rejects_empty_blocks_and_unknown_modes():
    from llava_st.core import block_layout, layout_ids

    with pytest.raises(ValueError, match="F >= 1"):
        block_layout(0, 4, "interleave")
    with pytest.raises(ValueError, match="unknown query layout"):
        block_layout(2, 4, "sideways")
    with pytest.raises(ValueError, match="2 frames need 2 query ids"):
        layout_ids(block_layout(2, 4, "after", 1), 7, [1])
