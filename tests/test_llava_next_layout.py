"""LLaVA-NeXT host: where the queries go inside real upstream's multimodal sequence.

A padded batch of a 2-frame video and an anyres_max_9 image (800 x 300 px -> base + 1x2 grid) through
LlavaSTQwen's splice; positions are checked against arithmetic from upstream's layout (TOKENS_PER_FRAME
for each newline and pooling mode) and against what is actually at those positions:
the <r_i> embedding rows, upstream's own visual tokens (from LlavaQwenForCausalLM with the same weights)
and the description's token embeddings.
"""

import pytest
import torch

pytestmark = [pytest.mark.upstream, pytest.mark.usefixtures("torch_one_thread")]

# Tokens per frame of upstream's video block: bilinear pooling gives 14 x 14, average pooling 13 x 13.
TOKENS_PER_FRAME = {
    ("grid", "bilinear"): 14 * 15,
    ("grid", "average"): 13 * 14,
    ("frame", "bilinear"): 14 * 14 + 1,
    ("no_token", "bilinear"): 14 * 14,
    ("one_token", "bilinear"): 14 * 14,  # + one newline after the last frame
}


@pytest.fixture(scope="module")
def models(qwen_tokenizer, tiny_siglip_repo):
    """(tokenizer with queries, ST model with 8 queries, upstream LlavaQwenForCausalLM, same weights)."""
    from llava.model.language_model.llava_qwen import LlavaQwenForCausalLM

    from llava_st.testing.upstream import tiny_llava_qwen_config, tiny_llava_st_qwen

    tokenizer, st_model = tiny_llava_st_qwen(qwen_tokenizer, tiny_siglip_repo, num_queries=8)
    config = tiny_llava_qwen_config(qwen_tokenizer, tiny_siglip_repo)
    config._attn_implementation = "sdpa"
    upstream = LlavaQwenForCausalLM(config)
    result = upstream.load_state_dict(st_model.state_dict(), strict=False)
    assert not result.missing_keys and all(k.startswith("space_decoder.") for k in result.unexpected_keys)
    return tokenizer, st_model, upstream.eval()


def _ids(tokenizer, before: str, after: str) -> torch.Tensor:
    from llava.constants import IMAGE_TOKEN_INDEX

    return torch.tensor(tokenizer(before).input_ids + [IMAGE_TOKEN_INDEX] + tokenizer(after).input_ids)


@pytest.fixture(scope="module")
def batch(models):
    """Two items: a 2-frame video (longer text) and an anyres image; description positions (in each
    item's unpadded input_ids) include one before the placeholder."""
    from llava.mm_utils import process_images
    from PIL import Image

    tokenizer, st_model, _ = models
    video_ids = _ids(tokenizer, "<|im_start|>user\n", "\nWhere is the red box moving to the right?")
    image_ids = _ids(tokenizer, "user\n", "\nFind the cat.")
    torch.manual_seed(1)
    video = torch.randn(2, 3, 384, 384)
    picture = Image.fromarray((torch.rand(300, 800, 3) * 255).byte().numpy())
    image = process_images([picture], st_model.get_vision_tower().image_processor, st_model.config)[0]
    assert image.shape[0] == 3  # base + 1x2 grid
    text = [[0, video_ids.shape[0] - 3, video_ids.shape[0] - 2], [image_ids.shape[0] - 2]]
    return dict(ids=[video_ids, image_ids], images=[video, image], modalities=["video", "image"], sizes=[(384, 384), picture.size],
                text=text)


def _pad(ids, side: str, pad_id: int = 0):
    L = max(x.shape[0] for x in ids)
    out = torch.full((len(ids), L), pad_id)
    mask = torch.zeros(len(ids), L, dtype=torch.bool)
    for i, x in enumerate(ids):
        sl = slice(L - len(x), L) if side == "left" else slice(0, len(x))
        out[i, sl] = x
        mask[i, sl] = True
    return out, mask


_REFERENCE = {}


def _upstream_embeds(upstream, ids, images, modality, size):
    """Upstream's spliced sequence [n, D] for one item (no padding, no truncation), cached per item and
    layout setting."""
    key = (ids.tolist().__repr__(), modality, upstream.config.mm_newline_position, upstream.config.mm_spatial_pool_mode)
    if modality == "image":  # images do not depend on the video settings
        key = key[:2]
    if key not in _REFERENCE:
        with torch.no_grad():
            out = upstream.prepare_inputs_labels_for_multimodal(ids[None], None, None, None, None, [images], [modality], [size])
        _REFERENCE[key] = out[4][0]
    return _REFERENCE[key]


@pytest.mark.parametrize(
    "newline,pool,side",
    [
        ("grid", "bilinear", "left"),
        ("grid", "average", "right"),
        ("frame", "bilinear", "left"),
        ("no_token", "bilinear", "right"),
        ("one_token", "bilinear", "left"),
    ],
)
def test_queries_sit_after_each_frame_and_after_the_image(models, batch, newline, pool, side):
    _, st_model, upstream = models
    from llava.constants import IMAGE_TOKEN_INDEX

    for m in (st_model, upstream):
        m.config.mm_newline_position = newline
        m.config.mm_spatial_pool_mode = pool
        m.config.tokenizer_padding_side = side
    ids, mask = _pad(batch["ids"], side)
    with torch.no_grad():
        (_, _, out_mask, _, embeds, _), index = st_model.prepare_grounded_inputs(
            ids, None, mask, None, None, batch["images"], batch["modalities"], batch["sizes"], text_positions=batch["text"]
        )
    query = st_model.query_tokens
    table = st_model.get_input_embeddings().weight
    lengths = out_mask.sum(1)
    offsets = (embeds.shape[1] - lengths) if side == "left" else torch.zeros_like(lengths)

    # Video: query f right after frame f's tokens.
    per_frame = TOKENS_PER_FRAME[(newline, pool)]
    p_video = int((batch["ids"][0] == IMAGE_TOKEN_INDEX).nonzero()[0, 0])
    expected = [int(offsets[0]) + p_video + (f + 1) * per_frame + f for f in range(2)]
    assert index.query_index[0, :2].tolist() == expected
    assert index.frame_mask[0].tolist()[:2] == [True, True]
    for f in range(2):
        assert torch.equal(embeds[0, expected[f]], table[query.ids[f]])
    ref = _upstream_embeds(upstream, batch["ids"][0], batch["images"][0], "video", batch["sizes"][0])
    block = ref[p_video : p_video + 2 * per_frame].reshape(2, per_frame, -1)
    visual = embeds[0][index.visual_index[0, :2, :per_frame]]  # [2, per_frame, D]
    assert index.visual_mask[0, :2, :per_frame].all()
    assert torch.equal(visual, block)
    if newline == "one_token":  # upstream's single trailing newline stays last, after the last query
        assert torch.equal(embeds[0, expected[-1] + 1], st_model.get_model().image_newline)

    # Image: the terminal query right after the whole anyres block.
    p_image = int((batch["ids"][1] == IMAGE_TOKEN_INDEX).nonzero()[0, 0])
    ref = _upstream_embeds(upstream, batch["ids"][1], batch["images"][1], "image", batch["sizes"][1])
    image_block = ref.shape[0] - (batch["ids"][1].shape[0] - 1)
    q_image = int(offsets[1]) + p_image + image_block
    assert index.query_index[1].tolist() == [q_image] + [0] * (index.query_index.shape[1] - 1)
    assert index.frame_mask[1].tolist()[0] is True and not index.frame_mask[1, 1:].any()
    assert torch.equal(embeds[1, q_image], table[query.terminal_id])
    n_visual = int(index.visual_mask[1, 0].sum())
    assert n_visual == image_block
    assert torch.equal(embeds[1][index.visual_index[1, 0, :n_visual]], ref[p_image : p_image + image_block])

    # Description tokens: their own embeddings, before and after the visual block.
    for b in range(2):
        positions = index.text_index[b][index.text_mask[b]]
        assert len(positions) == len(batch["text"][b])
        source = batch["ids"][b][batch["text"][b]]
        assert torch.equal(embeds[b, positions], table[source])
    # Everything else is upstream's sequence: each item is upstream's plus F queries.
    assert lengths.tolist() == [
        _upstream_embeds(upstream, batch["ids"][0], batch["images"][0], "video", batch["sizes"][0]).shape[0] + 2,
        ref.shape[0] + 1,
    ]


def test_truncation_drops_cut_frames_and_text(models, batch):
    _, st_model, _ = models
    st_model.config.mm_newline_position = "grid"
    st_model.config.mm_spatial_pool_mode = "bilinear"
    st_model.config.tokenizer_padding_side = "right"
    ids, mask = _pad(batch["ids"][:1], "right")
    p_video = int((ids[0] < 0).nonzero()[0, 0])  # the <image> placeholder (IMAGE_TOKEN_INDEX < 0)
    cut = p_video + 210 + 1 + 100  # inside frame 1, before its query
    st_model.config.tokenizer_model_max_length = cut
    try:
        with torch.no_grad():
            (_, _, _, _, embeds, labels), index = st_model.prepare_grounded_inputs(
                ids, None, mask, None, ids.clone(), batch["images"][:1], ["video"], batch["sizes"][:1], text_positions=batch["text"][:1]
            )
    finally:
        st_model.config.tokenizer_model_max_length = 32768
    assert embeds.shape[1] == cut and labels.shape[1] == cut
    assert index.frame_mask[0].tolist() == [True, False]
    assert index.query_index[0, 0] == p_video + 210
    assert index.text_mask[0].tolist() == [True, False, False]  # the one before the video survives
    assert (index.visual_index[index.visual_mask] < cut).all()


def test_too_many_frames_is_a_clear_error(models):
    _, st_model, _ = models
    from llava.constants import IMAGE_TOKEN_INDEX

    ids = torch.tensor([[1, IMAGE_TOKEN_INDEX, 2]])
    video = torch.zeros(9, 3, 384, 384)  # 9 frames, 8 queries
    with pytest.raises(ValueError, match=r"images\[0\].*9 frames"):
        st_model.prepare_grounded_inputs(ids, None, None, None, None, [video], ["video"], [(384, 384)])


def test_64_frame_layout_arithmetic_under_left_padding_and_truncation():
    """The splice steps on synthetic features (no tower): 64 frames of 210 tokens, a shorter second item,
    left padding, then a max length that cuts the last frames and the description."""
    from llava_st.hosts.llava_next.interleave import (
        find_block,
        finish_index,
        insert_queries,
        map_text_positions,
        pad_like_upstream,
    )

    F, S, D, IMG = 64, 210, 4, -200
    config = type("Config", (), {"tokenizer_padding_side": "left", "tokenizer_model_max_length": None})()
    items = [(torch.tensor([1, 2, IMG, 3, 4, 5]), [4, 5]), (torch.tensor([7, IMG, 8]), [2])]
    seqs, labels, layouts, texts = [], [], [], []
    for ids, text in items:
        p = int((ids == IMG).nonzero()[0, 0])
        frames = torch.arange(F * S, dtype=torch.float)[:, None].expand(F * S, D)
        seq = torch.cat([torch.full((p, D), -1.0), frames, torch.full((len(ids) - p - 1, D), -2.0)])
        block = find_block(ids, seq.shape[0], IMG, F, 0)
        assert (block.start, block.length) == (p, F * S)
        queries = torch.full((F, D), -3.0)
        seq, lab, layout = insert_queries(seq, torch.zeros(seq.shape[0], dtype=torch.long), block, queries, "interleave", -100)
        assert torch.equal(seq[layout.query_index], queries)
        assert torch.equal(seq[layout.visual_index].reshape(F * S, D), frames)
        seqs.append(seq), labels.append(lab), layouts.append(layout)
        texts.append(map_text_positions(text, block, F))
    assert texts == [[4 + F * (S + 1) - 1, 5 + F * (S + 1) - 1], [2 + F * (S + 1) - 1]]
    _, _, mask, _, offsets = pad_like_upstream(config, seqs, labels, -100, training=False)
    index = finish_index(layouts, texts, config, offsets)
    assert offsets.tolist() == [0, 3] and mask.sum(1).tolist() == [6 - 1 + F * (S + 1), 3 - 1 + F * (S + 1)]
    assert index.query_index[0].tolist() == [2 + f * (S + 1) + S for f in range(F)]
    assert index.query_index[1].tolist() == [3 + 1 + f * (S + 1) + S for f in range(F)]

    config.tokenizer_model_max_length = 2 + 60 * (S + 1) + 100  # 60 whole frames, the 61st cut before its query
    embeds, _, _, _, offsets = pad_like_upstream(config, seqs, labels, -100, training=False)
    index = finish_index(layouts, texts, config, offsets)
    assert embeds.shape[1] == config.tokenizer_model_max_length and offsets.tolist() == [0, 0]
    assert index.frame_mask.sum(1).tolist() == [60, 60]
    assert index.visual_mask[0, 60].sum() == 100 and not index.frame_mask[0, 60]  # cut inside frame 60
    assert not index.text_mask.any()
