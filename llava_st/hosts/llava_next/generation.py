"""Tube generation (paper §3.1.5) on the LLaVA-NeXT host, with one shared video prefix.

The prompt is split as prefix = system + user turn up to and including the video block and the time
instruction, and suffix = the instruction with the description + the assistant header. The prefix is
encoded once (vision tower, queries, LLM prefill); on its KV cache every description's suffix is
prefilled and its answer decoded greedily, all descriptions in one batch (core.generation, the routine
both hosts use). Per description the decoder reads the prefix's visual/query hidden states and the
suffix's description tokens (last layer) -> one box per frame. Boxes never come from generated
coordinates.
"""

from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Union

import torch
from transformers import DynamicCache

from ...core.generation import CausalLM, generate_on_prefix
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


def causal_lm(model) -> CausalLM:
    """The LLM of a LlavaSTQwenForCausalLM as core.generation sees it (Qwen2 body, LM head, token table)."""
    body = model.get_model()
    return CausalLM.of(body, model.lm_head, body.embed_tokens, model.config)


@torch.no_grad()
def generate_grounded(model, prefix_ids: torch.Tensor, images, modalities, image_sizes, suffixes: Sequence[Suffix], max_new_tokens: int,
                      eos_token_id: Union[int, Iterable[int]]) -> List[GroundedAnswer]:
    """One answer per suffix, all on one encoding of the prefix, the suffixes in one batch.

    prefix_ids: LongTensor [P0] holding one IMAGE_TOKEN_INDEX; images/modalities/image_sizes as for
    upstream's generate (one entry). Greedy decoding of at most `max_new_tokens` tokens, each answer
    ending at its first token in `eos_token_id` (an id or several; -1: never).
    """
    device = model.device
    (_, _, _, _, prefix_embeds, _), index = model.prepare_grounded_inputs(
        prefix_ids[None].to(device), None, None, None, None, images, modalities, image_sizes
    )
    lm = causal_lm(model)
    cache = DynamicCache()
    prefix_hidden = lm.run(prefix_embeds, cache)  # [1, P, D]
    P = prefix_hidden.shape[1]
    rows = generate_on_prefix(lm, cache, [s.ids for s in suffixes], max_new_tokens, eos_token_id)
    answers = []
    for suffix, row in zip(suffixes, rows):
        boxes = None
        if model.space_decoder is not None and index is not None:
            hidden = torch.cat([prefix_hidden, row.hidden[None]], dim=1)
            boxes = model.space_decoder(hidden, _with_text(index, [P + int(p) for p in suffix.description]))[0]
        answers.append(GroundedAnswer(row.token_ids, boxes))
    return answers


def _with_text(index: GroundingIndex, positions: Sequence[int]) -> GroundingIndex:
    """The prefix's index (batch of 1) with the description's absolute positions."""
    text = torch.tensor([list(positions) or [0]], dtype=torch.long)
    mask = torch.tensor([[True] * len(positions) or [False]])
    return GroundingIndex(index.visual_index, index.visual_mask, index.query_index, index.frame_mask, text, mask)
