"""Tube generation (paper §3.1.5) with one shared video prefix.

The prompt is split as prefix = system + user turn up to and including the video block and the time
instruction, and suffix = the instruction with the description + the assistant header. The prefix is
encoded once (vision tower, queries, LLM prefill) and its KV cache reused by every description. Per
description: prefill the suffix on the cache; the decoder reads the prefix's visual/query hidden states
and the suffix's description tokens (last layer) -> one box per frame; the answer text is decoded
greedily from the same cache, which is then cut back to the prefix. Boxes never come from generated
coordinates.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from transformers import DynamicCache

from ...core.layout import GroundingIndex


@dataclass
class GroundedAnswer:
    """token_ids: generated ids (without the end token); boxes_cxcywh: [F, 4] normalised, one per
    sampled frame (F = 1 for an image), None for a model without decoder."""

    token_ids: List[int]
    boxes_cxcywh: Optional[torch.Tensor]


@dataclass
class Suffix:
    """ids: LongTensor [S] of the text after the prefix; description: positions (in `ids`) of the
    description's tokens, empty for a plain question."""

    ids: torch.Tensor
    description: Sequence[int]


def _run(model, embeds: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
    """LLM on embeds [1, n, D] after what `cache` holds; returns last-layer hidden states [1, n, D]."""
    return model.get_model()(inputs_embeds=embeds, past_key_values=cache, use_cache=True, return_dict=True).last_hidden_state


@torch.no_grad()
def generate_grounded(model, prefix_ids: torch.Tensor, images, modalities, image_sizes, suffixes: Sequence[Suffix], max_new_tokens: int,
                      eos_token_id: int) -> List[GroundedAnswer]:
    """One answer per suffix, all on one encoding of the prefix.

    prefix_ids: LongTensor [P0] holding one IMAGE_TOKEN_INDEX; images/modalities/image_sizes as for
    upstream's generate (one entry). Greedy decoding of at most `max_new_tokens` tokens.
    """
    device = model.device
    (_, _, _, _, prefix_embeds, _), index = model.prepare_grounded_inputs(
        prefix_ids[None].to(device), None, None, None, None, images, modalities, image_sizes
    )
    cache = DynamicCache()
    prefix_hidden = _run(model, prefix_embeds, cache)  # [1, P, D]
    P = prefix_hidden.shape[1]
    embed = model.get_model().embed_tokens
    answers = []
    for suffix in suffixes:
        suffix_hidden = _run(model, embed(suffix.ids[None].to(device)), cache)  # [1, S, D]
        boxes = None
        if model.space_decoder is not None and index is not None:
            hidden = torch.cat([prefix_hidden, suffix_hidden], dim=1)
            boxes = model.space_decoder(hidden, _with_text(index, [P + int(p) for p in suffix.description]))[0]
        tokens = []
        last = suffix_hidden[:, -1:]
        for step in range(max_new_tokens):
            token = int(model.lm_head(last)[0, -1].argmax())
            if token == eos_token_id:
                break
            tokens.append(token)
            if step + 1 < max_new_tokens:
                last = _run(model, embed(torch.tensor([[token]], device=device)), cache)
        cache.crop(P)
        answers.append(GroundedAnswer(tokens, boxes))
    return answers


def _with_text(index: GroundingIndex, positions: Sequence[int]) -> GroundingIndex:
    """The prefix's index (batch of 1) with the description's absolute positions."""
    text = torch.tensor([list(positions) or [0]], dtype=torch.long)
    mask = torch.tensor([[True] * len(positions) or [False]])
    return GroundingIndex(index.visual_index, index.visual_mask, index.query_index, index.frame_mask, text, mask)
