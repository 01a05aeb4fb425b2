"""`LlavaSTQwenForCausalLM`: upstream's `LlavaQwenForCausalLM` with SpaceVLLM's queries and space decoder.

Reads top to bottom as layout -> run LLM -> decode -> loss:
  * layout: `prepare_inputs_labels_for_multimodal` (the upstream method generate() and forward() call)
    lets upstream build the visual blocks, then puts the query embeddings in and records positions
    (interleave.py);
  * run LLM: upstream's forward on the spliced embeddings, keeping the last-layer hidden states;
  * decode: core.QueryGuidedSpaceDecoder -> one box per frame, normalised cxcywh;
  * loss: core.space_loss on frames inside the span + the LM loss, weighted by core.combine_losses.
With `st_query_mode="none"` (boxes as text) nothing of this runs: the model is upstream's.
"""

import logging
from dataclasses import dataclass
from typing import List, Optional

import torch
from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.model.language_model.llava_qwen import LlavaQwenForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from ...core.layout import GroundingIndex
from ...core.losses import combine_losses, space_loss
from ...core.tokens import QueryTokens
from ..space_decoder import SpaceDecoderMixin
from .config import LlavaSTQwenConfig
from .interleave import (
    find_block,
    finish_index,
    image_index_per_item,
    insert_queries,
    map_text_positions,
    pad_like_upstream,
    upstream_untruncated_right_padded,
)

logger = logging.getLogger(__name__)


@dataclass
class LlavaSTCausalLMOutput(CausalLMOutputWithPast):
    """Upstream's output plus the space decoder's.

    pred_boxes: [B, F, 4] normalised cxcywh, one box per sampled frame (F = 1 for an image: the
        terminal query's box); None when the batch has no visual block.
    frame_mask: [B, F] bool, True where pred_boxes[b, f] belongs to a real frame with its query in the
        sequence (False for padding frames and frames cut by truncation).
    loss_text, loss_l1, loss_giou: the unweighted terms (core.losses.LOSS_TERMS); `loss` is their weighted sum (STConfig weights).
    """

    pred_boxes: Optional[torch.FloatTensor] = None
    frame_mask: Optional[torch.BoolTensor] = None
    loss_text: Optional[torch.FloatTensor] = None
    loss_l1: Optional[torch.FloatTensor] = None
    loss_giou: Optional[torch.FloatTensor] = None


def text_positions_from_batch(text_index: Optional[torch.Tensor], text_mask: Optional[torch.Tensor]) -> Optional[List[List[int]]]:
    """GROUNDING_TEXT_INDEX [B, T] and GROUNDING_TEXT_MASK [B, T] -> per item the list of positions."""
    if text_index is None:
        return None
    if text_mask is None:
        text_mask = torch.ones_like(text_index, dtype=torch.bool)
    return [row[m].tolist() for row, m in zip(text_index, text_mask.bool())]


def _modality(modalities: List[str], image_idx: int) -> str:
    """Modality of images[image_idx]; upstream treats images beyond the modalities list as images."""
    return modalities[image_idx] if image_idx < len(modalities) else "image"


class LlavaSTQwenForCausalLM(SpaceDecoderMixin, LlavaQwenForCausalLM):
    config_class = LlavaSTQwenConfig

    def __init__(self, config: LlavaSTQwenConfig):
        config = LlavaSTQwenConfig.from_upstream(config)
        super().__init__(config)
        config.model_type = LlavaSTQwenConfig.model_type  # upstream's __init__ overwrote it
        self.add_space_decoder(config.hidden_size, config.st)
        self.post_init()

    @property
    def query_tokens(self) -> QueryTokens:
        ids = self.config.st_query_token_ids
        if ids is None:
            raise ValueError(
                "config.st_query_token_ids is not set: add the query tokens first "
                "(llava_st.hosts.llava_next.loading.add_st_tokens)"
            )
        return QueryTokens(tuple(ids))

    # ---- layout ----------------------------------------------------------------------------------

    def prepare_inputs_labels_for_multimodal(self, input_ids, position_ids, attention_mask, past_key_values, labels, images,
                                             modalities=None, image_sizes=None):
        """Upstream's method and return value, with the queries in the visual blocks."""
        return self.prepare_grounded_inputs(input_ids, position_ids, attention_mask, past_key_values, labels, images, modalities,
                                            image_sizes)[0]

    def prepare_grounded_inputs(self, input_ids, position_ids, attention_mask, past_key_values, labels, images, modalities=None,
                                image_sizes=None, text_positions=None):
        """Upstream's splice plus queries. Returns (upstream's 6-tuple (input_ids, position_ids,
        attention_mask, past_key_values, inputs_embeds [B, L, D], labels [B, L]), GroundingIndex or None).

        text_positions: per item, positions of the description's tokens in the item's unpadded
            input_ids (GROUNDING_TEXT_INDEX), or None. They come back as absolute positions in the index.
        Items with exactly one `<image>` (a video or an image) get queries; items with none or several
        get none (all-False masks in the index).
        """
        if modalities is None or isinstance(modalities, str):
            modalities = [modalities or "image"]
        mode = self.config.st_query_mode
        if mode == "none" or self.get_vision_tower() is None or images is None or input_ids.shape[1] == 1:
            upstream = super().prepare_inputs_labels_for_multimodal(input_ids, position_ids, attention_mask, past_key_values, labels,
                                                                    images, modalities, image_sizes)
            return upstream, None
        self._check_frame_counts(images, modalities)
        mask_in = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        labels_in = torch.full_like(input_ids, IGNORE_INDEX) if labels is None else labels
        with upstream_untruncated_right_padded(self.config):
            _, _, spliced_mask, _, spliced, spliced_labels = super().prepare_inputs_labels_for_multimodal(
                input_ids, None, mask_in, past_key_values, labels_in, images, modalities, image_sizes
            )
        item_ids = [row[m] for row, m in zip(input_ids, mask_in)]
        item_images = image_index_per_item(item_ids, IMAGE_TOKEN_INDEX)
        seqs, seq_labels, layouts, texts = [], [], [], []
        for b, ids in enumerate(item_ids):
            n = int(spliced_mask[b].sum())
            seq, lab, block, layout = spliced[b, :n], spliced_labels[b, :n], None, None
            if len(item_images[b]) == 1:
                image_idx = item_images[b][0]
                block, query_ids = self._block_and_queries(ids, n, images, modalities, image_idx, b)
                query_embeds = self.get_model().embed_tokens(torch.tensor(query_ids, device=seq.device))
                seq, lab, layout = insert_queries(seq, lab, block, query_embeds, mode, IGNORE_INDEX)
            seqs.append(seq)
            seq_labels.append(lab)
            layouts.append(layout)
            added = 0 if layout is None else int(layout.query_index.numel())
            texts.append(map_text_positions(text_positions[b] if text_positions is not None else None, block, added))
        embeds, new_labels, new_mask, new_positions, offsets = pad_like_upstream(self.config, seqs, seq_labels, IGNORE_INDEX, self.training)
        index = finish_index(layouts, texts, self.config, offsets)
        skipping = getattr(self.config, "use_pos_skipping", False) and self.training
        upstream = (
            None,
            new_positions if (position_ids is not None or skipping) else None,
            None if attention_mask is None else new_mask.to(attention_mask.dtype),
            past_key_values,
            embeds,
            None if labels is None else new_labels,
        )
        return upstream, index

    def _check_frame_counts(self, images, modalities):
        """Fail before encoding when a video has more frames than there are queries."""
        for i, image in enumerate(images):
            if _modality(modalities, i) == "video" and image.ndim == 4 and image.shape[0] > self.config.st_num_queries:
                raise ValueError(f"images[{i}]: a video of {image.shape[0]} frames needs 1..{self.config.st_num_queries} queries")

    def _block_and_queries(self, ids, spliced_len, images, modalities, image_idx, item):
        """The visual block of batch item `item` and the ids of the queries it gets."""
        image = images[image_idx]
        is_video = _modality(modalities, image_idx) == "video" and (isinstance(images, list) or images.ndim == 5)
        num_frames = image.shape[0] if is_video and image.ndim == 4 else 1
        trailing = int(
            is_video
            and getattr(self.config, "mm_newline_position", "one_token") == "one_token"
            and "unpad" in getattr(self.config, "mm_patch_merge_type", "flat")
        )
        try:
            block = find_block(ids, spliced_len, IMAGE_TOKEN_INDEX, num_frames, trailing)
            query_ids = self.query_tokens.frame_ids(num_frames) if is_video else [self.query_tokens.terminal_id]
        except ValueError as exc:
            raise ValueError(f"batch item {item}: {exc}") from exc
        return block, query_ids

    # ---- run LLM, decode, loss -------------------------------------------------------------------

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        inputs_embeds=None,
        labels=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        images=None,
        image_sizes=None,
        return_dict=None,
        modalities=None,
        dpo_forward=False,
        cache_position=None,
        grounding_boxes=None,
        grounding_box_mask=None,
        grounding_text_index=None,
        grounding_text_mask=None,
        grounding_index: Optional[GroundingIndex] = None,
    ):
        """Upstream's forward plus the grounding inputs of core/batch.py:

        grounding_boxes [B, F, 4] normalised cxcywh targets, grounding_box_mask [B, F] (frames inside the
        span with a box), grounding_text_index / grounding_text_mask [B, T] (description token positions
        in the unpadded input_ids). grounding_index: positions for a caller that passes inputs_embeds.
        Returns LlavaSTCausalLMOutput (a tuple when return_dict is False).
        """
        modalities = ["image"] if modalities is None else modalities
        upstream_kwargs = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            images=images,
            image_sizes=image_sizes,
            return_dict=return_dict,
            modalities=modalities,
            dpo_forward=dpo_forward,
            cache_position=cache_position,
        )
        if dpo_forward:
            return super().forward(**upstream_kwargs)
        if self.space_decoder is None or (inputs_embeds is not None and grounding_index is None):
            return self._text_forward(upstream_kwargs, return_dict)
        index = grounding_index
        if inputs_embeds is None:
            text_positions = text_positions_from_batch(grounding_text_index, grounding_text_mask)
            (input_ids, position_ids, attention_mask, past_key_values, inputs_embeds, labels), index = self.prepare_grounded_inputs(
                input_ids, position_ids, attention_mask, past_key_values, labels, images, modalities, image_sizes, text_positions
            )
        if index is None:
            return self._text_forward(upstream_kwargs, return_dict)
        spliced = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       past_key_values=past_key_values, inputs_embeds=inputs_embeds, labels=labels)
        # with inputs_embeds upstream's forward skips its own splice and runs the Qwen2 LM on ours
        out = super().forward(**{**upstream_kwargs, **spliced, "output_hidden_states": True, "return_dict": True})
        pred_boxes = self.space_decoder(out.hidden_states[-1], index)  # [B, F, 4]
        space = None
        if grounding_boxes is not None and grounding_box_mask is not None:
            space = self.space_terms(pred_boxes, index.frame_mask, grounding_boxes, grounding_box_mask)
        loss = None if out.loss is None and space is None else combine_losses(out.loss, space, self.config.st)
        result = LlavaSTCausalLMOutput(
            loss=loss,
            logits=out.logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states if output_hidden_states else None,
            attentions=out.attentions,
            pred_boxes=pred_boxes,
            frame_mask=index.frame_mask.to(pred_boxes.device),
            loss_text=out.loss,
            loss_l1=None if space is None else space["loss_l1"],
            loss_giou=None if space is None else space["loss_giou"],
        )
        return result if return_dict is not False else result.to_tuple()

    def _text_forward(self, upstream_kwargs: dict, return_dict) -> LlavaSTCausalLMOutput:
        """Upstream's forward where nothing is grounded (no visual block, or query mode "none"): its LM
        loss is `loss_text` and `loss` is combine_losses of it alone (λ_time·L_text), as on the
        transformers host; no boxes."""
        out = super().forward(**{**upstream_kwargs, "return_dict": True})
        result = LlavaSTCausalLMOutput(
            loss=None if out.loss is None else combine_losses(out.loss, None, self.config.st),
            logits=out.logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            loss_text=out.loss,
        )
        return result if return_dict is not False else result.to_tuple()

    @staticmethod
    def space_terms(pred_boxes, frame_mask, target_boxes, target_mask):
        """Raw L1 / GIoU terms over frames that are inside the span (target_mask [B, F_t]) and whose query
        is in the sequence (frame_mask [B, F_p]). pred_boxes [B, F_p, 4], target_boxes [B, F_t, 4]."""
        F = min(pred_boxes.shape[1], target_boxes.shape[1])
        target_mask = target_mask.to(pred_boxes.device).bool()
        mask = target_mask[:, :F] & frame_mask[:, :F].to(pred_boxes.device)
        dropped = int(target_mask.sum() - mask.sum())
        if dropped:
            logger.debug("%d target boxes have no query in the sequence (truncated or padding frames)", dropped)
        return space_loss(pred_boxes[:, :F], target_boxes[:, :F].to(pred_boxes.device), mask)
