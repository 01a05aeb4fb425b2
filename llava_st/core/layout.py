"""Where the queries go (paper eq. 2) and the index maps the space decoder reads.

A host hands per-frame visual features to `build_visual_block`, splices the returned block into its
embedding sequence in place of the image placeholder, and turns the block-relative positions into
absolute sequence positions with `BlockLayout.shifted`. `GroundingIndex.collate` pads them over a batch.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch


@dataclass
class BlockLayout:
    """Positions of one visual block's tokens.

    visual_index: LongTensor [F, S], position of token s of frame f.
    query_index: LongTensor [F], position of frame f's query; None when the block has no queries.
    length: number of tokens in the block, L = F * S (+ F with queries).
    Positions are relative to the block's first token until `shifted` moves them.
    """

    visual_index: torch.Tensor
    query_index: Optional[torch.Tensor]
    length: int

    def shifted(self, offset: int) -> "BlockLayout":
        return BlockLayout(
            self.visual_index + offset,
            None if self.query_index is None else self.query_index + offset,
            self.length,
        )


def build_visual_block(frame_features: torch.Tensor, query_embeds: Optional[torch.Tensor], mode: str = "interleave"):
    """Lay out visual tokens and query embeddings.

    frame_features: [F, S, D], S visual tokens per frame (for an image F = 1, S = its token count).
    query_embeds: [F, D], the embeddings of <r_0> ... <r_{F-1}> (or the terminal <r_N> for an image);
        ignored for mode "none".
    mode: "interleave" -> v_0 q_0 v_1 q_1 ... (the method); "after" -> v_0 ... v_{F-1} q_0 ... q_{F-1}
        (Table 7 ablation); "none" -> v_0 ... v_{F-1} (upstream's layout, boxes as text).
    Returns (block [L, D], BlockLayout).
    """
    F, S, D = frame_features.shape
    device = frame_features.device
    frame_pos = torch.arange(F, device=device)[:, None]
    token_pos = torch.arange(S, device=device)[None, :]
    if mode == "none":
        return frame_features.reshape(F * S, D), BlockLayout(frame_pos * S + token_pos, None, F * S)
    if query_embeds is None or query_embeds.shape != (F, D):
        got = None if query_embeds is None else tuple(query_embeds.shape)
        raise ValueError(f"query_embeds must be [F={F}, D={D}], got {got}")
    query_embeds = query_embeds.to(frame_features.dtype)
    if mode == "interleave":
        block = torch.cat([frame_features, query_embeds[:, None]], dim=1).reshape(F * (S + 1), D)  # [F*(S+1), D]
        visual = frame_pos * (S + 1) + token_pos
        query = torch.arange(F, device=device) * (S + 1) + S
    elif mode == "after":
        block = torch.cat([frame_features.reshape(F * S, D), query_embeds], dim=0)  # [F*S+F, D]
        visual = frame_pos * S + token_pos
        query = F * S + torch.arange(F, device=device)
    else:
        raise ValueError(f"unknown query layout mode {mode!r}")
    return block, BlockLayout(visual, query, block.shape[0])


@dataclass
class GroundingIndex:
    """Absolute positions (in the LLM's input sequence) that the space decoder reads, padded over a batch.

    visual_index: LongTensor [B, F, S]; visual_mask: BoolTensor [B, F, S]
    query_index: LongTensor [B, F]; frame_mask: BoolTensor [B, F] (False for padding frames)
    text_index: LongTensor [B, T]; text_mask: BoolTensor [B, T] (the description's tokens)
    Padding positions hold 0 and are masked out.
    """

    visual_index: torch.Tensor
    visual_mask: torch.Tensor
    query_index: torch.Tensor
    frame_mask: torch.Tensor
    text_index: torch.Tensor
    text_mask: torch.Tensor

    @classmethod
    def collate(cls, layouts: Sequence[Optional[BlockLayout]], text_positions: Sequence[Optional[Sequence[int]]]):
        """Pad per-item absolute layouts and description positions into one index. None items (no
        visual block, or a block without queries) get all-False masks."""
        B = len(layouts)
        F = max([lay.visual_index.shape[0] for lay in layouts if lay is not None and lay.query_index is not None], default=1)
        S = max([lay.visual_index.shape[1] for lay in layouts if lay is not None and lay.query_index is not None], default=1)
        T = max([len(t) for t in text_positions if t is not None], default=1) or 1
        out = cls(
            torch.zeros(B, F, S, dtype=torch.long),
            torch.zeros(B, F, S, dtype=torch.bool),
            torch.zeros(B, F, dtype=torch.long),
            torch.zeros(B, F, dtype=torch.bool),
            torch.zeros(B, T, dtype=torch.long),
            torch.zeros(B, T, dtype=torch.bool),
        )
        for b, (layout, text) in enumerate(zip(layouts, text_positions)):
            if layout is not None and layout.query_index is not None:
                f, s = layout.visual_index.shape
                out.visual_index[b, :f, :s] = layout.visual_index.cpu()
                out.visual_mask[b, :f, :s] = True
                out.query_index[b, :f] = layout.query_index.cpu()
                out.frame_mask[b, :f] = True
            if text is not None and len(text):
                out.text_index[b, : len(text)] = torch.as_tensor(list(text), dtype=torch.long)
                out.text_mask[b, : len(text)] = True
        return out

    def to(self, device) -> "GroundingIndex":
        return GroundingIndex(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    def shift(self, offsets: torch.Tensor) -> "GroundingIndex":
        """Add a per-item offset [B] to every position (left padding, a dropped prefix)."""
        o = offsets.to(self.query_index.device).long()
        return GroundingIndex(
            self.visual_index + o[:, None, None] * self.visual_mask,
            self.visual_mask,
            self.query_index + o[:, None] * self.frame_mask,
            self.frame_mask,
            self.text_index + o[:, None] * self.text_mask,
            self.text_mask,
        )

    def clip(self, seq_len: int) -> "GroundingIndex":
        """Mask out positions at or beyond `seq_len` (after truncation). A frame whose query was cut is
        dropped whole."""
        visual_mask = self.visual_mask & (self.visual_index < seq_len)
        frame_mask = self.frame_mask & (self.query_index < seq_len) & visual_mask.any(-1)
        text_mask = self.text_mask & (self.text_index < seq_len)
        zero = lambda idx, m: torch.where(m, idx, torch.zeros_like(idx))  # noqa: E731
        return GroundingIndex(
            zero(self.visual_index, visual_mask),
            visual_mask,
            zero(self.query_index, frame_mask),
            frame_mask,
            zero(self.text_index, text_mask),
            text_mask,
        )


def find_subsequence(sequence: Sequence[int], pattern: Sequence[int], start: int = 0) -> int:
    """First index >= start where `pattern` occurs in `sequence`, or -1."""
    n, m = len(sequence), len(pattern)
    if m == 0:
        return -1
    seq = list(sequence)
    pat = list(pattern)
    for i in range(start, n - m + 1):
        if seq[i : i + m] == pat:
            return i
    return -1


def description_token_positions(input_ids: Sequence[int], tokenizer, description: str, start: int = 0) -> List[int]:
    """Positions (token indices into `input_ids`) of `description`'s tokens, searched from `start`.

    BPE tokenises a phrase differently after a space, a newline or at the start of a message, so the
    variants are tried in that order. Returns [] when the description is not found.
    """
    text = description.strip().rstrip(".")  # instructions quote the description without its final period
    for variant in (" " + text, text, "\n" + text):
        ids = tokenizer(variant, add_special_tokens=False)["input_ids"]
        if variant.startswith("\n") and len(ids) > 1:
            ids = ids[1:]
        pos = find_subsequence(input_ids, ids, start)
        if pos >= 0:
            return list(range(pos, pos + len(ids)))
    return []
