"""LlavaOnevisionForConditionalGeneration with the SpaceVLLM core: layout -> run LLM -> decode -> loss.

The processor already wrote the query tokens between the frames' video tokens (processor.py), so the
model's own forward runs unchanged; this subclass reads the positions of the visual, query and
description tokens from `input_ids`, runs the core's Query-Guided Space Decoder on the last hidden
states and adds the space loss (paper eq. 5-6).
"""

from dataclasses import dataclass
from typing import List, Optional

import torch
from transformers import LlavaOnevisionForConditionalGeneration
from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionCausalLMOutputWithPast

from ...core.decoder import QueryGuidedSpaceDecoder
from ...core.layout import BlockLayout, GroundingIndex
from ...core.losses import combine_losses, space_loss
from .config import LlavaSTOnevisionConfig


@dataclass
class LlavaSTOutput(LlavaOnevisionCausalLMOutputWithPast):
    """The model's output plus the space decoder's.

    pred_boxes: [B, F, 4] normalised cxcywh per sampled frame (F = 1 for an image), or None.
    pred_box_mask: [B, F] bool, False for padding frames.
    loss_text, loss_l1, loss_giou: the unweighted terms of `loss` (None when not computed).
    """

    pred_boxes: Optional[torch.FloatTensor] = None
    pred_box_mask: Optional[torch.BoolTensor] = None
    loss_text: Optional[torch.FloatTensor] = None
    loss_l1: Optional[torch.FloatTensor] = None
    loss_giou: Optional[torch.FloatTensor] = None


class LlavaSTOnevisionForConditionalGeneration(LlavaOnevisionForConditionalGeneration):
    """LLaVA-OneVision (SigLIP + MLP projector + Qwen2) with spatio-temporal aware queries and the
    Query-Guided Space Decoder. Extra forward inputs are the grounding keys of core/batch.py."""

    config_class = LlavaSTOnevisionConfig

    # Training speed: with labels, compute the vocabulary logits only where a label is (the answer
    # tokens) instead of at every position; the loss is the same (tested), `logits` is then None.
    # hosts.hf.train.train_hf turns it on for its run.
    logits_at_labels_only: bool = False

    def __init__(self, config: LlavaSTOnevisionConfig):
        super().__init__(config)
        self.st = config.st_config
        self.st_decoder = (
            QueryGuidedSpaceDecoder(config.text_config.hidden_size, self.st) if self.st.uses_decoder else None
        )
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, QueryGuidedSpaceDecoder):  # visited after its layers: its own init wins
            module.reset_parameters()

    # ---- layout: positions read from input_ids ---------------------------------------------------
    def grounding_layouts(self, input_ids: torch.Tensor) -> List[Optional[BlockLayout]]:
        """Per item of input_ids [B, L]: the absolute BlockLayout of its visual block (visual_index
        [F, P] for a video, [1, n] for an image; query_index [F]) or None (no block, or mode "none").
        Raises ValueError when the tokens do not form the processor's layout."""
        if not self.st.uses_decoder:
            return [None] * input_ids.shape[0]
        ids_all = torch.tensor(self.config.st_query_token_ids, device=input_ids.device)
        video_queries, terminal = ids_all[:-1], ids_all[-1]
        layouts = []
        for b, ids in enumerate(input_ids):
            q_pos = torch.isin(ids, video_queries).nonzero()[:, 0]
            t_pos = (ids == terminal).nonzero()[:, 0]
            video = (ids == self.config.video_token_index).nonzero()[:, 0]
            image = (ids == self.config.image_token_index).nonzero()[:, 0]
            if len(q_pos) and len(t_pos):
                raise ValueError(f"item {b}: both video queries and the image query; one visual input per item")
            if len(q_pos):
                F = len(q_pos)
                if not torch.equal(ids[q_pos], video_queries[:F]):
                    raise ValueError(f"item {b}: video queries are not <r_0> ... <r_{F - 1}> in order")
                P, rest = divmod(len(video) - 1, F)
                if P < 1 or rest:
                    raise ValueError(f"item {b}: {len(video)} video tokens do not split into {F} frames + newline")
                layouts.append(BlockLayout(video[: F * P].reshape(F, P), q_pos, F * (P + 1) + 1))
            elif len(t_pos):
                if len(t_pos) != 1 or not len(image):
                    raise ValueError(f"item {b}: an image query needs exactly one image block")
                layouts.append(BlockLayout(image[None], t_pos, len(image) + 1))
            else:
                layouts.append(None)
        return layouts

    def grounding_index(self, input_ids, text_index=None, text_mask=None) -> GroundingIndex:
        """GroundingIndex for input_ids [B, L]; text_index/text_mask [B, T] are the description's token
        positions in input_ids (core/batch.py GROUNDING_TEXT_*)."""
        texts = [None] * input_ids.shape[0]
        if text_index is not None:
            texts = [idx[m].tolist() for idx, m in zip(text_index, text_mask.bool())]
        return GroundingIndex.collate(self.grounding_layouts(input_ids), texts)

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
        return_dict: Optional[bool] = None,
        **kwargs,
    ) -> LlavaSTOutput:
        """The model's forward (all of its inputs pass through) and, when input_ids hold queries, the
        decoder's boxes; with labels the loss is eq. 5-6. grounding_boxes [B, F, 4] normalised cxcywh,
        grounding_box_mask [B, F]; the space loss counts only masked frames."""
        with_queries = self.st_decoder is not None and input_ids is not None
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
        result = LlavaSTOutput(**fields, loss_text=fields.get("loss"))
        if not with_queries:
            if labels is not None:
                result.loss = combine_losses(result.loss_text, None, self.st)
            return result

        index = self.grounding_index(input_ids, grounding_text_index, grounding_text_mask)
        boxes = self.st_decoder(out.hidden_states[-1], index)  # [B, F, 4]
        result.pred_boxes, result.pred_box_mask = boxes, index.frame_mask.to(boxes.device)
        if labels is not None or grounding_boxes is not None:
            space = None
            if grounding_boxes is not None:
                F = boxes.shape[1]
                target = _fit_frames(grounding_boxes.to(boxes), F)
                mask = _fit_frames(grounding_box_mask.bool().to(boxes.device), F) & result.pred_box_mask
                space = space_loss(boxes, target, mask)
                result.loss_l1, result.loss_giou = space["loss_l1"], space["loss_giou"]
            result.loss = combine_losses(result.loss_text, space, self.st)
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
