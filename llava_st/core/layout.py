"""Where the queries go (paper eq. 2): the one layout of a visual block, and the index the decoder reads.

`block_layout` is the single definition of the layout, used by both hosts: given a block of F frames of
S tokens each (an image: F = 1, S = its whole token run) followed by K newline tokens that belong to no
frame (the video's single newline), it returns the block-relative positions of every visual token, query
and newline for each `query_mode`:

    interleave: v_0 q_0  v_1 q_1  ...  v_{F-1} q_{F-1}  nl      (the method; the newline stays last)
    after:      v_0 v_1 ... v_{F-1}  nl  q_0 q_1 ... q_{F-1}    (Table 7 ablation)
    none:       v_0 v_1 ... v_{F-1}  nl                         (upstream's block, boxes as text)

"after" puts the queries after the *whole* visual block, its newline included. Why this one: an "after"
block is then exactly the "none" block (the base model's own visual input, untouched) followed by the F
queries, so the ablation differs from the baseline by the appended queries only; and it is the one rule
that reads the same for every newline placement (with LLaVA-NeXT's `grid`/`frame` newlines, which sit
inside the frames, the queries can only come after the newlines). The transformers host already wrote
it; the LLaVA-NeXT host used to put the queries before `one_token`'s trailing newline in this mode.
"interleave" keeps the newline last on both hosts (the committed demo checkpoint's layout).

Hosts use it as follows: the transformers processor writes its ids from it (`layout_ids`) and hands the
layout to the batch; the LLaVA-NeXT host scatters upstream's block embeddings and the query embeddings at
its positions (`build_visual_block`). `BlockLayout.shifted` turns block-relative positions into absolute
sequence positions, and `GroundingIndex.collate` pads them over a batch.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

# Batch keys of a GroundingIndex's visual/query fields (the transformers host's batch carries them; with
# core.batch's GROUNDING_TEXT_INDEX / GROUNDING_TEXT_MASK they make the whole index). Tensors, so that
# collators, BatchFeature.to and Trainer move them like any input.
GROUNDING_VISUAL_INDEX = "grounding_visual_index"
GROUNDING_VISUAL_MASK = "grounding_visual_mask"
GROUNDING_QUERY_INDEX = "grounding_query_index"
GROUNDING_FRAME_MASK = "grounding_frame_mask"
GROUNDING_LAYOUT_KEYS = (GROUNDING_VISUAL_INDEX, GROUNDING_VISUAL_MASK, GROUNDING_QUERY_INDEX, GROUNDING_FRAME_MASK)


@dataclass
class BlockLayout:
    """Positions of one visual block's tokens.

    visual_index: LongTensor [F, S], position of token s of frame f (a frame's whole run of S tokens;
        with LLaVA-NeXT's `grid`/`frame` newline placement the row/frame newlines are part of that run).
    query_index: LongTensor [F], position of frame f's query; None when the block has no queries.
    length: number of tokens in the block, L = F * S + K (+ F with queries).
    newline_index: LongTensor [K], positions of the block's tokens after its frames, which belong to no
        frame (the video's single newline); empty for an image.
    Positions are relative to the block's first token until `shifted` moves them.
    """

    visual_index: torch.Tensor
    query_index: Optional[torch.Tensor]
    length: int
    newline_index: Optional[torch.Tensor] = None

    def __post_init__(self):
        if self.newline_index is None:
            self.newline_index = torch.zeros(0, dtype=torch.long, device=self.visual_index.device)

    @property
    def num_frames(self) -> int:
        return int(self.visual_index.shape[0])

    def shifted(self, offset: int) -> "BlockLayout":
        return BlockLayout(
            self.visual_index + offset,
            None if self.query_index is None else self.query_index + offset,
            self.length,
            self.newline_index + offset,
        )

    def to(self, device) -> "BlockLayout":
        return BlockLayout(self.visual_index.to(device), None if self.query_index is None else self.query_index.to(device),
                           self.length, self.newline_index.to(device))


def block_layout(num_frames: int, frame_tokens: int, mode: str, newlines: int = 0) -> BlockLayout:
    """The layout of a visual block (see the module docstring), positions relative to its first token.

    num_frames: F (1 for an image); frame_tokens: S, the tokens of one frame's run (an image: all of its
    tokens, anyres newlines included); mode: core.config.QUERY_MODES; newlines: K, the tokens after the
    last frame that belong to no frame (the video's newline: 1 on the transformers host and with
    LLaVA-NeXT's `one_token`, 0 for an image and for `grid`/`frame`/`no_token`).
    """
    F, S, K = int(num_frames), int(frame_tokens), int(newlines)
    if F < 1 or S < 1 or K < 0:
        raise ValueError(f"a visual block needs F >= 1 frames of S >= 1 tokens and K >= 0 newlines, got F={F}, S={S}, K={K}")
    frame, token = torch.arange(F)[:, None], torch.arange(S)[None, :]
    if mode == "none":
        return BlockLayout(frame * S + token, None, F * S + K, F * S + torch.arange(K))
    if mode == "interleave":
        visual, query, newline = frame * (S + 1) + token, torch.arange(F) * (S + 1) + S, F * (S + 1) + torch.arange(K)
    elif mode == "after":
        visual, query, newline = frame * S + token, F * S + K + torch.arange(F), F * S + torch.arange(K)
    else:
        raise ValueError(f"unknown query layout mode {mode!r}")
    return BlockLayout(visual, query, F * (S + 1) + K, newline)


def layout_ids(layout: BlockLayout, visual_id: int, query_ids: Sequence[int]) -> List[int]:
    """Token ids of a block-relative layout: `visual_id` at every visual and newline position (the
    transformers host's `<video>`/`<image>` placeholder, into which the model scatters its features in
    order), query_ids[f] at frame f's query."""
    ids = [int(visual_id)] * layout.length
    if layout.query_index is not None:
        if len(query_ids) != layout.num_frames:
            raise ValueError(f"{layout.num_frames} frames need {layout.num_frames} query ids, got {len(query_ids)}")
        for pos, qid in zip(layout.query_index.tolist(), query_ids):
            ids[pos] = int(qid)
    return ids


def build_visual_block(frame_features: torch.Tensor, query_embeds: Optional[torch.Tensor], mode: str = "interleave",
                       newlines: Optional[torch.Tensor] = None):
    """Scatter a block's tokens and the query embeddings at the positions of `block_layout`.

    frame_features: [F, S, D], the S tokens of each frame's run (for an image F = 1, S = its token count).
    query_embeds: [F, D], the embeddings of <r_0> ... <r_{F-1}> (or the terminal <r_N> for an image);
        ignored for mode "none".
    newlines: [K, D], the block's tokens after the last frame (LLaVA-NeXT one_token's newline), or None.
    Returns (block [L, D], BlockLayout).
    """
    F, S, D = frame_features.shape
    layout = block_layout(F, S, mode, 0 if newlines is None else newlines.shape[0]).to(frame_features.device)
    if layout.query_index is not None and (query_embeds is None or query_embeds.shape != (F, D)):
        got = None if query_embeds is None else tuple(query_embeds.shape)
        raise ValueError(f"query_embeds must be [F={F}, D={D}], got {got}")
    block = frame_features.new_empty(layout.length, D)
    block[layout.visual_index.reshape(-1)] = frame_features.reshape(F * S, D)
    if newlines is not None:
        block[layout.newline_index] = newlines.to(block.dtype)
    if layout.query_index is not None:
        block[layout.query_index] = query_embeds.to(block.dtype)
    return block, layout


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

    def layout_batch(self) -> dict:
        """The visual/query fields under their batch keys (GROUNDING_LAYOUT_KEYS)."""
        return dict(zip(GROUNDING_LAYOUT_KEYS, (self.visual_index, self.visual_mask, self.query_index, self.frame_mask)))

    @classmethod
    def from_batch(cls, visual_index, visual_mask, query_index, frame_mask, text_index=None, text_mask=None) -> "GroundingIndex":
        """The index from its batch tensors; without description positions (text_index None) every item
        gets one masked-out text slot."""
        B, device = query_index.shape[0], query_index.device
        if text_index is None:
            text_index, text_mask = torch.zeros(B, 1, dtype=torch.long), torch.zeros(B, 1, dtype=torch.bool)
        elif text_mask is None:
            text_mask = torch.ones_like(text_index, dtype=torch.bool)
        return cls(visual_index.long(), visual_mask.bool(), query_index.long(), frame_mask.bool(), text_index.to(device).long(),
                   text_mask.to(device).bool())

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
