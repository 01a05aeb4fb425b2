"""Queries inside upstream's multimodal sequence (paper eq. 2), with exact positions per batch item.

Upstream (llava/model/llava_arch.py::prepare_inputs_labels_for_multimodal @ df17966) replaces each
`<image>` placeholder by the visual block of its image or video, then truncates every item to
`tokenizer_model_max_length` and pads the batch left or right. The host lets upstream build the blocks
unchanged (newline tokens, pooling, anyres, unpadding) with truncation and padding switched off, then:
  1. cuts each item's block into frames and scatters them and the query embeddings at the positions of
     the one layout (core.layout.block_layout, via core.build_visual_block),
  2. truncates and pads like upstream (`pad_like_upstream`),
and records where every visual token, query and description token ended up (core.GroundingIndex).

Frames inside a video block, per `mm_newline_position`: "grid" (h rows of h tokens + 1 newline each),
"frame" (h*h tokens + 1 newline), "no_token" (h*h tokens) split the block into F equal chunks;
"one_token" has F chunks of h*h tokens and one trailing newline: the layout's newline, last in mode
"interleave", before the queries in mode "after" (core/layout.py says why). An image's whole block
(anyres base + unpadded grid + newlines) is one "frame" followed by the terminal query.
"""

import contextlib
import random
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from ...core.layout import BlockLayout, GroundingIndex, build_visual_block


@dataclass
class ItemBlock:
    """Where one batch item's single visual block lies, before queries are put in.

    start: position of the block's first token in the item's spliced (unpadded) sequence, which equals
        the position of `<image>` in the item's unpadded input_ids.
    length: tokens in the block. num_frames: F (1 for an image). trailing: tokens after the last frame
        that belong to no frame (one_token's newline: the layout's newlines).
    """

    start: int
    length: int
    num_frames: int
    trailing: int = 0


@contextlib.contextmanager
def upstream_untruncated_right_padded(config):
    """Run upstream's splice with no truncation, right padding and no position skipping; the config's
    attributes are restored (or removed again) afterwards."""
    settings = {"tokenizer_model_max_length": None, "tokenizer_padding_side": "right", "use_pos_skipping": False}
    saved = {k: getattr(config, k) for k in settings if hasattr(config, k)}
    for key, value in settings.items():
        setattr(config, key, value)
    try:
        yield
    finally:
        for key in settings:
            if key in saved:
                setattr(config, key, saved[key])
            else:
                delattr(config, key)


def image_index_per_item(input_ids: Sequence[torch.Tensor], image_token_index: int) -> List[List[int]]:
    """Which entries of `images` each item consumes, counted the way upstream's splice loop does (an
    item without `<image>` still consumes one). input_ids: unpadded [n_b] per item."""
    out, cursor = [], 0
    for ids in input_ids:
        n = int((ids == image_token_index).sum())
        out.append(list(range(cursor, cursor + n)))
        cursor += max(n, 1)
    return out


def find_block(ids: torch.Tensor, spliced_len: int, image_token_index: int, num_frames: int, trailing: int) -> ItemBlock:
    """The block of an item with exactly one `<image>`: ids [n] unpadded input_ids, spliced_len the
    length of upstream's spliced sequence for this item (the block replaces the placeholder)."""
    start = int((ids == image_token_index).nonzero()[0, 0])
    length = spliced_len - (ids.shape[0] - 1)
    if length - trailing <= 0 or (length - trailing) % num_frames:
        raise ValueError(f"a visual block of {length} tokens does not split into {num_frames} frames (+{trailing})")
    return ItemBlock(start, length, num_frames, trailing)


def insert_queries(seq: torch.Tensor, labels: torch.Tensor, block: ItemBlock, query_embeds: torch.Tensor, mode: str, ignore_index: int):
    """Put the queries into one item's spliced sequence: the block's frames, trailing newline and queries
    scattered at the positions of core.layout.block_layout.

    seq [n, D] embeddings, labels [n], query_embeds [F, D] (rows of <r_0..r_{F-1}> or the terminal <r_N>),
    mode "interleave" or "after". Returns (seq [n + F, D], labels [n + F], BlockLayout with positions in
    the new sequence).
    """
    end = block.start + block.length
    frames = seq[block.start : end - block.trailing]
    F = block.num_frames
    newlines = seq[end - block.trailing : end] if block.trailing else None
    new_block, layout = build_visual_block(frames.reshape(F, -1, seq.shape[-1]), query_embeds, mode, newlines)
    new_seq = torch.cat([seq[: block.start], new_block, seq[end:]])
    block_labels = torch.full((new_block.shape[0],), ignore_index, dtype=labels.dtype, device=labels.device)
    new_labels = torch.cat([labels[: block.start], block_labels, labels[end:]])
    return new_seq, new_labels, layout.shifted(block.start)


def map_text_positions(positions: Optional[Sequence[int]], block: Optional[ItemBlock], added: int) -> Optional[List[int]]:
    """Positions in an item's unpadded input_ids -> positions in its sequence with the block and queries
    spliced in. The block (block.length tokens, plus `added` queries) replaces the `<image>` token."""
    if positions is None:
        return None
    if block is None:
        return [int(p) for p in positions]
    grow = block.length + added - 1
    return [int(p) if p < block.start else int(p) + grow for p in positions if p != block.start]


# Adapted from llava/model/llava_arch.py::prepare_inputs_labels_for_multimodal (truncate, pad, position
# skipping) @ df17966: the same steps, applied after the queries are in, with the per-item pad offsets.
def pad_like_upstream(config, seqs: List[torch.Tensor], labels: List[torch.Tensor], ignore_index: int, training: bool):
    """Truncate each item to config.tokenizer_model_max_length and pad as upstream does.

    seqs: per item [n_b, D]; labels: per item [n_b]. Returns (embeds [B, L, D], labels [B, L],
    attention_mask bool [B, L], position_ids [B, L] or [1, L] with position skipping, offsets [B]: the
    number of padding tokens before each item's first token).
    """
    max_len_cfg = getattr(config, "tokenizer_model_max_length", None)
    seqs = [x[:max_len_cfg] for x in seqs]
    labels = [x[:max_len_cfg] for x in labels]
    B, L, D = len(seqs), max(x.shape[0] for x in seqs), seqs[0].shape[-1]
    ref = seqs[0]
    embeds = torch.zeros(B, L, D, dtype=ref.dtype, device=ref.device)
    out_labels = torch.full((B, L), ignore_index, dtype=labels[0].dtype, device=labels[0].device)
    mask = torch.zeros(B, L, dtype=torch.bool, device=ref.device)
    position_ids = torch.zeros(B, L, dtype=torch.long, device=ref.device)
    offsets = torch.zeros(B, dtype=torch.long)
    left = getattr(config, "tokenizer_padding_side", "right") == "left"
    for i, (seq, lab) in enumerate(zip(seqs, labels)):
        n = seq.shape[0]
        start = L - n if left else 0
        offsets[i] = start
        embeds[i, start : start + n] = seq
        out_labels[i, start : start + n] = lab
        mask[i, start : start + n] = True
        position_ids[i, start : start + n] = torch.arange(n, device=ref.device)
    if getattr(config, "use_pos_skipping", False) and training:
        position_ids = torch.arange(L, device=ref.device).unsqueeze(0)
        split_position = random.randint(0, L)
        left_add = random.randint(0, config.pos_skipping_range)
        right_add = random.randint(left_add, config.pos_skipping_range)
        position_ids[:, :split_position] += left_add
        position_ids[:, split_position:] += right_add
    return embeds, out_labels, mask, position_ids, offsets


def finish_index(layouts: List[Optional[BlockLayout]], text_positions: List[Optional[List[int]]], config,
                 offsets: torch.Tensor) -> GroundingIndex:
    """Collate per-item layouts (positions in the unpadded, untruncated sequence) into the batch's
    GroundingIndex: drop what truncation cut, then shift by the padding offsets [B]."""
    index = GroundingIndex.collate(layouts, text_positions)
    max_len_cfg = getattr(config, "tokenizer_model_max_length", None)
    if max_len_cfg is not None:
        index = index.clip(int(max_len_cfg))
    return index.shift(offsets)
