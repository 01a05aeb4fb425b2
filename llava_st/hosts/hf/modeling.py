"""LlavaOnevisionForConditionalGeneration with the SpaceVLLM core: layout -> run LLM -> decode -> loss.

The processor already wrote the query tokens at the positions of core.layout.block_layout
(processor.py), so the model's own forward runs unchanged; the batch carries those positions
(core.layout.GROUNDING_LAYOUT_KEYS, with the description's grounding_text_index/mask: a GroundingIndex),
this subclass runs the core's Query-Guided Space Decoder on the last hidden states at them and adds the
space loss (paper eq. 5-6). A caller that passes only input_ids gets the same positions from the same
layout function (`block_layouts`).
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from transformers import LlavaOnevisionForConditionalGeneration
from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionCausalLMOutputWithPast

from ...core.layout import BlockLayout, GroundingIndex, block_layout, layout_ids
from ...core.losses import combine_losses, space_loss
from ..space_decoder import SpaceDecoderMixin
from .config import LlavaSTOnevisionConfig
from .processor import pooled_tokens_per_frame


@dataclass
class LlavaSTCausalLMOutput(LlavaOnevisionCausalLMOutputWithPast):
    """The model's output plus the space decoder's.

    pred_boxes: [B, F, 4] normalised cxcywh per sampled frame (F = 1 for an image), or None.
    frame_mask: [B, F] bool, True where pred_boxes[b, f] belongs to a real frame with its query in the
        sequence (False for padding frames).
    loss_text, loss_l1, loss_giou: the unweighted terms of `loss` (None when not computed).
    """

    pred_boxes: Optional[torch.FloatTensor] = None
    frame_mask: Optional[torch.BoolTensor] = None
    loss_text: Optional[torch.FloatTensor] = None
    loss_l1: Optional[torch.FloatTensor] = None
    loss_giou: Optional[torch.FloatTensor] = None


class LlavaSTOnevisionForConditionalGeneration(SpaceDecoderMixin, LlavaOnevisionForConditionalGeneration):
    """LLaVA-OneVision (SigLIP + MLP projector + Qwen2) with spatio-temporal aware queries and the
    Query-Guided Space Decoder. Extra forward inputs are the grounding keys of core/batch.py."""

    config_class = LlavaSTOnevisionConfig

    # Training speed: with labels, compute the vocabulary logits only where a label is (the answer
    # tokens) instead of at every position; the loss is the same (tested), `logits` is then None.
    # hosts.hf.train.train_hf turns it on for its run.
    logits_at_labels_only: bool = False

    def __init__(self, config: LlavaSTOnevisionConfig):
        super().__init__(config)
        self.add_space_decoder(config.text_config.hidden_size, config.st)
        self.post_init()

    # ---- layout: positions from core.layout -----------------------------------------------------
    @property
    def tokens_per_frame(self) -> int:
        """P: video tokens per frame after the model's 2x2 pooling of its g x g patch grid."""
        vision = self.config.vision_config
        return pooled_tokens_per_frame(vision.image_size // vision.patch_size)

    def block_layouts(self, input_ids: torch.Tensor) -> List[Optional[BlockLayout]]:
        """For a caller that has only input_ids [B, L] (the batch's index is the other way): per item the
        absolute layout of its visual block, core.layout.block_layout of a video of (n - 1) / P frames
        (n `<video>` tokens, P per frame, one newline) or of an image of n `<image>` tokens, placed at the
        block's first placeholder; None without a block or in mode "none". The ids are only counted and
        then compared with the layout's own ids (core.layout.layout_ids): ValueError when they differ."""
        if not self.config.st.uses_decoder:
            return [None] * input_ids.shape[0]
        mode, queries = self.config.st.query_mode, list(self.config.st_query_token_ids)
        layouts = []
        for b, ids in enumerate(input_ids):
            video = (ids == self.config.video_token_index).nonzero()[:, 0]
            image = (ids == self.config.image_token_index).nonzero()[:, 0]
            if len(video) and len(image):
                raise ValueError(f"item {b}: a video and an image; one visual input per item")
            if len(video):
                P = self.tokens_per_frame
                F, rest = divmod(len(video) - 1, P)
                if F < 1 or rest:
                    raise ValueError(f"item {b}: {len(video)} video tokens do not split into frames of {P} tokens + newline")
                if F > len(queries) - 1:
                    raise ValueError(f"item {b}: {F} frames but the model has only {len(queries) - 1} video queries")
                layout, placeholder, frame_queries, start = block_layout(F, P, mode, newlines=1), video[0], queries[:F], int(video[0])
            elif len(image):
                layout, placeholder, frame_queries, start = block_layout(1, len(image), mode), image[0], queries[-1:], int(image[0])
            else:
                layouts.append(None)
                continue
            expected = layout_ids(layout, int(ids[placeholder]), frame_queries)
            if ids[start : start + layout.length].tolist() != expected:
                raise ValueError(f"item {b}: the tokens of its visual block are not the {mode!r} layout of core.layout.block_layout "
                                 f"({layout.num_frames} frame(s) of {layout.visual_index.shape[1]} tokens); one visual input per item")
            layouts.append(layout.shifted(start))
        return layouts

    def grounding_index(self, input_ids, text_index=None, text_mask=None, layouts: Optional[Sequence[Optional[BlockLayout]]] = None
                        ) -> GroundingIndex:
        """GroundingIndex for input_ids [B, L]; text_index/text_mask [B, T] are the description's token
        positions in input_ids (core/batch.py GROUNDING_TEXT_*). layouts: per item the absolute layout of
        its visual block as the processor made it (LlavaSTProcessor.encode_with_layouts); without them
        `block_layouts`."""
        texts = [None] * input_ids.shape[0]
        if text_index is not None:
            texts = [idx[m].tolist() for idx, m in zip(text_index, text_mask.bool())]
        return GroundingIndex.collate(self.block_layouts(input_ids) if layouts is None else layouts, texts)

    def _check_index(self, input_ids: torch.Tensor, index: GroundingIndex) -> None:
        """The batch's index and its input_ids agree: frame f's query is <r_f> (the terminal <r_N> at
        frame 0 of an image) and every visual position holds a `<video>`/`<image>` token."""
        ids = input_ids.to(index.query_index.device)
        queries = torch.tensor(self.config.st_query_token_ids, device=ids.device)
        at_query = ids.gather(1, index.query_index)  # [B, F]
        F = at_query.shape[1]
        video_queries = queries[: min(F, len(queries) - 1)]
        expected = torch.full_like(at_query, -1)
        expected[:, : len(video_queries)] = video_queries
        is_image = ids.gather(1, index.visual_index[:, 0, :1]) == self.config.image_token_index  # [B, 1]
        expected = torch.where(is_image & (torch.arange(F, device=ids.device) == 0), queries[-1], expected)
        placeholders = torch.tensor([self.config.video_token_index, self.config.image_token_index], device=ids.device)
        at_visual = torch.isin(ids.gather(1, index.visual_index.flatten(1)), placeholders)
        bad_query = (at_query != expected) & index.frame_mask
        bad_visual = ~at_visual & index.visual_mask.flatten(1)
        bad = (bad_query.any(1) | bad_visual.any(1)).nonzero()[:, 0].tolist()
        if bad:
            raise ValueError(f"items {bad}: the grounding index does not match input_ids (queries or visual tokens elsewhere); "
                             "build both with the same LlavaSTProcessor")

    def _check_feature_counts(self, input_ids, out) -> None:
        """The model scatters features into token positions without checking their numbers; a processor
        that expanded a visual block to the wrong length would silently shift every frame."""
        if input_ids is None:
            return
        for name, token, feats in (
            ("image", self.config.image_token_index, out.image_hidden_states),
            ("video", self.config.video_token_index, out.video_hidden_states),
        ):
            if feats is not None and int((input_ids == token).sum()) != feats.shape[0]:
                raise ValueError(
                    f"{int((input_ids == token).sum())} {name} tokens in input_ids but the model made "
                    f"{feats.shape[0]} {name} features; the processor's expansion does not match this model"
                )

    # ---- forward ---------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor = None,
        labels: Optional[torch.LongTensor] = None,
        grounding_boxes: Optional[torch.FloatTensor] = None,
        grounding_box_mask: Optional[torch.BoolTensor] = None,
        grounding_text_index: Optional[torch.LongTensor] = None,
        grounding_text_mask: Optional[torch.BoolTensor] = None,
        grounding_visual_index: Optional[torch.LongTensor] = None,
        grounding_visual_mask: Optional[torch.BoolTensor] = None,
        grounding_query_index: Optional[torch.LongTensor] = None,
        grounding_frame_mask: Optional[torch.BoolTensor] = None,
        return_dict: Optional[bool] = None,
        **kwargs,
    ) -> LlavaSTCausalLMOutput:
        """The model's forward (all of its inputs pass through) and, when input_ids hold queries, the
        decoder's boxes; with labels the loss is eq. 5-6. grounding_boxes [B, F, 4] normalised cxcywh,
        grounding_box_mask [B, F]; the space loss counts only masked frames. grounding_visual_index
        [B, F, S], grounding_visual_mask, grounding_query_index [B, F], grounding_frame_mask: the positions
        the processor laid out (core.layout.GROUNDING_LAYOUT_KEYS; checked against input_ids); without
        them they come from `block_layouts`."""
        with_queries = self.space_decoder is not None and input_ids is not None
        if with_queries:
            ids_all = torch.tensor(self.config.st_query_token_ids, device=input_ids.device)
            with_queries = bool(torch.isin(input_ids, ids_all).any())
        sparse = labels is not None and self.logits_at_labels_only
        if with_queries or sparse:
            kwargs["output_hidden_states"] = True
        if sparse:
            out = super().forward(input_ids=input_ids, return_dict=True, num_logits_to_keep=1, **kwargs)
            fields = {k: v for k, v in out.items() if k != "logits"}
            fields["loss"] = self._label_loss(out.hidden_states[-1], labels, kwargs.get("attention_mask"))
        else:
            out = super().forward(input_ids=input_ids, labels=labels, return_dict=True, **kwargs)
            fields = dict(out)
        self._check_feature_counts(input_ids, out)
        result = LlavaSTCausalLMOutput(**fields, loss_text=fields.get("loss"))
        if not with_queries:
            if labels is not None:
                result["loss"] = combine_losses(result.loss_text, None, self.config.st)
            return result

        if grounding_query_index is not None:
            index = GroundingIndex.from_batch(grounding_visual_index, grounding_visual_mask, grounding_query_index, grounding_frame_mask,
                                              grounding_text_index, grounding_text_mask)
            self._check_index(input_ids, index)
        else:
            index = self.grounding_index(input_ids, grounding_text_index, grounding_text_mask)
        boxes = self.space_decoder(out.hidden_states[-1], index)  # [B, F, 4]
        # item assignment: a ModelOutput field that was None at construction becomes a key only this way
        # (attribute assignment leaves it out of keys(), .get() and to_tuple())
        result["pred_boxes"], result["frame_mask"] = boxes, index.frame_mask.to(boxes.device)
        if labels is not None or grounding_boxes is not None:
            space = None
            if grounding_boxes is not None:
                F = boxes.shape[1]
                target = _fit_frames(grounding_boxes.to(boxes), F)
                mask = _fit_frames(grounding_box_mask.bool().to(boxes.device), F) & result.frame_mask
                space = space_loss(boxes, target, mask)
                result["loss_l1"], result["loss_giou"] = space["loss_l1"], space["loss_giou"]
            result["loss"] = combine_losses(result.loss_text, space, self.config.st)
        return result

    def _label_loss(self, hidden: torch.Tensor, labels: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """The base model's next-token loss (LlavaOnevisionForConditionalGeneration.forward, transformers
        4.45.2: mean cross entropy of position p's logits against labels[p + 1], where the attention mask
        of p + 1 is set), with the LM head applied only at those positions. hidden [B, L, D] is the
        LLM's last (normed) hidden state, labels [B, L] (-100: ignored)."""
        shift_labels = labels[:, 1:]
        keep = shift_labels != -100
        if attention_mask is not None:
            keep &= attention_mask[:, 1:].to(keep.device) != 0
        logits = self.get_output_embeddings()(hidden[:, :-1][keep])  # [N, V]
        return torch.nn.functional.cross_entropy(logits.float(), shift_labels[keep].to(logits.device))


def _fit_frames(t: torch.Tensor, frames: int) -> torch.Tensor:
    """Pad (zeros/False) or cut dim 1 of a [B, F', ...] target to F frames."""
    if t.shape[1] >= frames:
        return t[:, :frames]
    pad = torch.zeros((t.shape[0], frames - t.shape[1], *t.shape[2:]), dtype=t.dtype, device=t.device)
    return torch.cat([t, pad], dim=1)
