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

Items without grounding (QA, captions, VTG) have all-False masks. Hosts map the text positions into
their spliced sequence and build the visual/query positions themselves (layout.GroundingIndex).
"""

GROUNDING_BOXES = "grounding_boxes"
GROUNDING_BOX_MASK = "grounding_box_mask"
GROUNDING_TEXT_INDEX = "grounding_text_index"
GROUNDING_TEXT_MASK = "grounding_text_mask"
GROUNDING_KEYS = (GROUNDING_BOXES, GROUNDING_BOX_MASK, GROUNDING_TEXT_INDEX, GROUNDING_TEXT_MASK)
