"""The batch contract between data collators and both hosts' forward().

Besides the host's usual inputs (input_ids, labels, attention_mask, images/pixel values, ...), a batch
that carries grounding targets has these keys (absent or None when no item in the batch is grounded):

GROUNDING_BOXES     FloatTensor [B, F, 4]: target box per sampled frame, normalised cxcywh of the frame as
                    the model sees it (F = the batch's largest number of sampled frames; 1 for images).
GROUNDING_BOX_MASK  BoolTensor [B, F]: True where a frame is inside the (snapped) ground-truth span and
                    has a target box. The space loss counts only these frames.
GROUNDING_TEXT_INDEX LongTensor [B, T]: token positions, in `input_ids` as the collator built them
                    (before any visual splice or padding shift), of the description's tokens.
GROUNDING_TEXT_MASK BoolTensor [B, T]: True for real entries of GROUNDING_TEXT_INDEX.

Items without grounding (QA, captions, VTG) have all-False masks. `collate_targets` pads these four for
both hosts.

Where the visual block's positions are known when the batch is made (the transformers host: its
processor writes the ids from core.layout.block_layout), the batch also carries them under
core.layout.GROUNDING_LAYOUT_KEYS, in input_ids positions:

grounding_visual_index LongTensor [B, F, S] and grounding_visual_mask BoolTensor [B, F, S]: the visual
                    tokens of each frame (S the most per frame); grounding_query_index LongTensor [B, F]:
                    each frame's query token; grounding_frame_mask BoolTensor [B, F]: real frames.

The LLaVA-NeXT host builds the same index itself, after upstream has spliced the visual features in
(the same core.layout.block_layout, at the positions of the spliced sequence).
"""

from typing import Dict, Mapping, Optional, Sequence

import torch

GROUNDING_BOXES = "grounding_boxes"
GROUNDING_BOX_MASK = "grounding_box_mask"
GROUNDING_TEXT_INDEX = "grounding_text_index"
GROUNDING_TEXT_MASK = "grounding_text_mask"
GROUNDING_KEYS = (GROUNDING_BOXES, GROUNDING_BOX_MASK, GROUNDING_TEXT_INDEX, GROUNDING_TEXT_MASK)


def collate_targets(items: Sequence[Optional[Mapping]], max_length: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Pad per-item grounding targets into the four GROUNDING_KEYS of a batch of B = len(items).

    items: per item None (no targets) or a mapping with GROUNDING_BOXES [F_b, 4] normalised cxcywh,
    GROUNDING_BOX_MASK [F_b] bool and GROUNDING_TEXT_INDEX [T_b] token positions (a tensor or a list).
    Returns GROUNDING_BOXES [B, F, 4], GROUNDING_BOX_MASK [B, F], GROUNDING_TEXT_INDEX [B, T],
    GROUNDING_TEXT_MASK [B, T], F and T the batch's largest (at least 1), zeros / False as padding.
    max_length: text positions at or beyond it (cut by the collator's truncation) are masked out.
    """
    present = [it for it in items if it is not None]
    F = max([len(it[GROUNDING_BOXES]) for it in present] + [1])
    T = max([len(it[GROUNDING_TEXT_INDEX]) for it in present] + [1])
    B = len(items)
    boxes, box_mask = torch.zeros(B, F, 4), torch.zeros(B, F, dtype=torch.bool)
    text, text_mask = torch.zeros(B, T, dtype=torch.long), torch.zeros(B, T, dtype=torch.bool)
    for b, it in enumerate(items):
        if it is None:
            continue
        item_boxes = torch.as_tensor(it[GROUNDING_BOXES], dtype=torch.float32).reshape(-1, 4)
        item_text = torch.as_tensor(it[GROUNDING_TEXT_INDEX], dtype=torch.long).reshape(-1)
        f, t = item_boxes.shape[0], item_text.shape[0]
        boxes[b, :f] = item_boxes
        box_mask[b, :f] = torch.as_tensor(it[GROUNDING_BOX_MASK], dtype=torch.bool)
        text[b, :t] = item_text
        text_mask[b, :t] = True if max_length is None else item_text < max_length
    return {GROUNDING_BOXES: boxes, GROUNDING_BOX_MASK: box_mask, GROUNDING_TEXT_INDEX: text, GROUNDING_TEXT_MASK: text_mask}
