"""One layout on both hosts: the same clip and prompt through the transformers host (processor ids + batch
index + model forward) and the LLaVA-NeXT host (upstream's splice + query scatter) give the same query,
visual, newline and description positions relative to the video block, in every query_mode.

Both models see a frame as 196 tokens and the video's newline once after the frames: the transformers
tower at 384 px / patch 14 (27 x 27 patches, 2x2 pooling -> 14 x 14) and the LLaVA-NeXT tower with
`one_token` newlines and bilinear 2x2 pooling (upstream's `grid`/`frame` placements have no single-newline
counterpart in transformers' LLaVA-OneVision).
"""

import pytest
import torch

pytestmark = [pytest.mark.upstream, pytest.mark.usefixtures("torch_one_thread")]

FRAMES, QUERIES, TOKENS_PER_FRAME = 2, 4, 196
BEFORE, AFTER, DESCRIPTION = "<|im_start|>user\n", "\nWhere is the red box moving to the right?", "the red box moving to the right"


@pytest.fixture(scope="module")
def clip(moving_box_video):
    from llava_st.data.video import read_video

    frames, _ = read_video(str(moving_box_video[0]), FRAMES, force_sample=True)
    assert frames.shape[0] == FRAMES
    return frames


def _relative(index, b, start):
    """Positions of item b's real frames, queries and description tokens, minus the block start."""
    frames = index.frame_mask[b]
    visual = [row[m].sub(start).tolist() for row, m in zip(index.visual_index[b][frames], index.visual_mask[b][frames])]
    return dict(visual=visual, query=index.query_index[b][frames].sub(start).tolist(),
                text=index.text_index[b][index.text_mask[b]].sub(start).tolist())


def _hf(qwen_tokenizer, clip, mode):
    """The transformers host: ids from the processor, the batch's index, the model's forward. Returns
    (relative positions, newline positions relative to the block, sequence length)."""
    from llava_st.core.config import STConfig
    from llava_st.core.layout import description_token_positions
    from llava_st.hosts.hf import VideoSegment
    from llava_st.testing.hf import build_tiny_st

    model, proc = build_tiny_st(qwen_tokenizer, STConfig(num_queries=QUERIES, query_mode=mode), image_size=384, patch_size=14)
    assert proc.tokens_per_frame == model.tokens_per_frame == TOKENS_PER_FRAME
    batch = proc(text=BEFORE + "<video>" + AFTER, videos=[clip])
    ids, (layout,) = proc.encode_with_layouts([BEFORE, VideoSegment(FRAMES), AFTER])
    assert batch["input_ids"][0].tolist() == ids
    start = len(qwen_tokenizer(BEFORE, add_special_tokens=False).input_ids)
    text = description_token_positions(ids, proc.tokenizer, DESCRIPTION, start=start + layout.length)
    assert text, "description not found"
    with torch.no_grad():
        out = model(**batch, grounding_text_index=torch.tensor([text]), grounding_text_mask=torch.ones(1, len(text), dtype=torch.bool),
                    output_hidden_states=True)
    embeds = out.hidden_states[0][0]  # the LLM's input: features scattered into the placeholders
    assert torch.equal(embeds[layout.visual_index.reshape(-1)], out.video_hidden_states[:-1])  # frame features, in order
    assert torch.equal(embeds[layout.newline_index], out.video_hidden_states[-1:])  # the video's newline
    if mode == "none":
        assert model.space_decoder is None and out.pred_boxes is None and "grounding_query_index" not in batch
        positions = dict(visual=layout.visual_index.sub(start).tolist(), query=[], text=[t - start for t in text])
    else:
        assert out.pred_boxes.shape == (1, FRAMES, 4)
        table = model.get_input_embeddings().weight
        assert torch.equal(embeds[layout.query_index], table[model.config.st_query_token_ids[:FRAMES]])
        from llava_st.core.layout import GroundingIndex

        index = GroundingIndex.from_batch(batch["grounding_visual_index"], batch["grounding_visual_mask"], batch["grounding_query_index"],
                                          batch["grounding_frame_mask"], torch.tensor([text]), torch.ones(1, len(text), dtype=torch.bool))
        positions = _relative(index, 0, start)
        assert positions["query"] == layout.query_index.sub(start).tolist()
    return positions, layout.newline_index.sub(start).tolist(), len(ids)


def _llava_next(qwen_tokenizer, tiny_siglip_repo, clip, mode):
    """The LLaVA-NeXT host: upstream's splice of the same clip with the queries scattered in. Returns
    (relative positions, newline positions relative to the block, sequence length)."""
    from llava.constants import IMAGE_TOKEN_INDEX

    from llava_st.core.layout import description_token_positions
    from llava_st.hosts.llava_next.interleave import find_block, insert_queries, map_text_positions
    from llava_st.testing.upstream import tiny_llava_st_qwen

    tokenizer, model = tiny_llava_st_qwen(qwen_tokenizer, tiny_siglip_repo, num_queries=QUERIES, st_query_mode=mode,
                                          mm_newline_position="one_token")
    before = tokenizer(BEFORE).input_ids
    ids = before + [IMAGE_TOKEN_INDEX] + tokenizer(AFTER).input_ids
    start = len(before)
    text = description_token_positions(ids, tokenizer, DESCRIPTION, start=start + 1)
    assert text, "description not found"
    video = model.get_vision_tower().image_processor.preprocess(clip, return_tensors="pt")["pixel_values"]
    assert video.shape[0] == FRAMES
    with torch.no_grad():
        (_, _, _, _, embeds, _), index = model.prepare_grounded_inputs(
            torch.tensor([ids]), None, None, None, None, [video], ["video"], [clip.shape[1:3]], text_positions=[text]
        )
    embeds = embeds[0]
    newline = model.get_model().image_newline
    if mode == "none":
        # upstream's own sequence; the host's block finder and layout step on it, as for the other modes
        assert index is None
        block = find_block(torch.tensor(ids), embeds.shape[0], IMAGE_TOKEN_INDEX, FRAMES, 1)
        seq, _, layout = insert_queries(embeds, torch.zeros(embeds.shape[0], dtype=torch.long), block, None, mode, -100)
        assert torch.equal(seq, embeds)
        positions = dict(visual=layout.visual_index.sub(start).tolist(), query=[],
                         text=[t - start for t in map_text_positions(text, block, 0)])
    else:
        positions = _relative(index, 0, start)
        table = model.get_input_embeddings().weight
        assert torch.equal(embeds[index.query_index[0]], table[model.query_tokens.frame_ids(FRAMES)])
    newlines = [p for p in range(start, embeds.shape[0]) if torch.equal(embeds[p], newline.to(embeds.dtype))]
    return positions, [p - start for p in newlines], embeds.shape[0]


@pytest.mark.parametrize("mode", ["interleave", "after", "none"])
def test_both_hosts_lay_out_the_same_clip_identically(qwen_tokenizer, tiny_siglip_repo, clip, mode):
    hf, hf_newlines, hf_length = _hf(qwen_tokenizer, clip, mode)
    ln, ln_newlines, ln_length = _llava_next(qwen_tokenizer, tiny_siglip_repo, clip, mode)
    assert hf == ln
    assert hf_newlines == ln_newlines and len(hf_newlines) == 1
    assert hf_length == ln_length

    # and that is the layout of core/layout.py's docstring
    F, S = FRAMES, TOKENS_PER_FRAME
    frame_starts = [f * (S + 1) for f in range(F)] if mode == "interleave" else [f * S for f in range(F)]
    assert [row[0] for row in hf["visual"]] == frame_starts and all(len(row) == S for row in hf["visual"])
    expected = {"interleave": ([f * (S + 1) + S for f in range(F)], F * (S + 1)),
                "after": ([F * S + 1 + f for f in range(F)], F * S),
                "none": ([], F * S)}[mode]
    assert (hf["query"], hf_newlines[0]) == expected
    block = F * S + 1 + (0 if mode == "none" else F)
    assert hf["text"][0] > block - 1  # the description follows the block
