"""Grounding with the transformers host (paper §3.1.5): prefill, describe, generate, decode boxes.

For a video the prefix (system, video block with queries, time instruction) is run once; its KV cache
and last hidden states serve every description: the instructions of all descriptions are run on top of
the cache and their answers generated greedily in one batch (core.generation, the routine both hosts
use), then the decoder reads the prefix's visual/query states and each instruction's description states.
"""

import logging
from typing import List, Optional, Sequence

import torch
from transformers import DynamicCache

from ...core.boxtext import answer_token_budget
from ...core.config import check_frames, default_frames
from ...core.generation import CausalLM, generate_on_prefix, stop_token_ids
from ...core.grounder import Tube, check_descriptions
from ...core.layout import description_token_positions
from ...core.tube import assemble_tube, text_tube
from ...data.templates import REC_ANSWER, instruction
from ...data.video import read_video
from .data import load_image
from .prompt import image_prefix, question_suffix, video_prefix

logger = logging.getLogger(__name__)

__all__ = ["HFGrounder", "check_descriptions", "causal_lm"]


def causal_lm(model) -> CausalLM:
    """The LLM of a LlavaSTOnevisionForConditionalGeneration as core.generation sees it."""
    lm = model.language_model
    return CausalLM.of(lm.model, lm.lm_head, model.get_input_embeddings(), lm.config)


class HFGrounder:
    """Grounder over a transformers-host model (LlavaSTOnevisionForConditionalGeneration) and its processor
    (implements core.grounder.Grounder).

    frames: frames sampled per video by default (data.video.read_video's frames_upbound, force_sample as
    in training; None: core.config.default_frames, one per video query); max_new_tokens: answer length
    limit (tokens) for grounding; None derives it from the answer format and the clip
    (core.boxtext.answer_token_budget), so no trained answer can be cut.
    """

    def __init__(self, model, processor, frames: Optional[int] = None, max_new_tokens: Optional[int] = None, force_sample: bool = True):
        self.model = model.eval()
        self.processor = processor
        st = model.config.st
        self.frames = default_frames(st.num_queries) if frames is None else check_frames(frames, st.num_queries, st.query_mode)
        self.max_new_tokens = max_new_tokens
        self.force_sample = force_sample
        self.stop_ids = stop_token_ids(processor.tokenizer)

    @property
    def device(self):
        return next(self.model.parameters()).device

    # ---- public API ------------------------------------------------------------------------------
    @torch.no_grad()
    def ground(self, video_path: str, descriptions: Sequence[str], frames: Optional[int] = None, max_new_tokens: Optional[int] = None,
               task: str = "stvg") -> List[Tube]:
        """One tube per description (core/tube.py contract: span in seconds, per-frame pixel boxes of the
        original video); the descriptions are answered in one batch. task: "stvg" or "vtg" (the
        instruction template). Raises VideoReadError for a missing or unreadable video and ValueError for
        an empty description."""
        descriptions = check_descriptions(descriptions)
        times, video, answers = self.predict_video(video_path, descriptions, frames, task, max_new_tokens)
        return [self._tube(d, raw, boxes, times, video, None) for d, (raw, boxes) in zip(descriptions, answers)]

    @torch.no_grad()
    def ground_image(self, image_path: str, descriptions: Sequence[str], max_new_tokens: Optional[int] = None) -> List[Tube]:
        """One single-frame tube (t = 0, span [0, 0]) per description for an image (REC)."""
        descriptions = check_descriptions(descriptions)
        video, answers = self.predict_image(image_path, descriptions, max_new_tokens)
        return [self._tube(d, raw, boxes, [0.0], video, (0.0, 0.0)) for d, (raw, boxes) in zip(descriptions, answers)]

    @torch.no_grad()
    def predict_video(self, video_path: str, descriptions: Sequence[str], frames: Optional[int] = None, task: str = "stvg",
                      max_new_tokens: Optional[int] = None):
        """The raw predictions behind `ground`: (frame_times [F] seconds, video info, [(answer text,
        boxes [F, 4] normalised cxcywh for every sampled frame, or None without a decoder)])."""
        descriptions = check_descriptions(descriptions)
        pixels, sample, video = self._video(video_path, frames)
        prefix = video_prefix(sample.num_frames, sample.duration, sample.times)
        suffixes = [question_suffix(instruction(task, d)) for d in descriptions]
        limit = max_new_tokens or self.answer_budget(sample.times)
        return sample.times.tolist(), video, self._predict(prefix, self._video_pixels(pixels), suffixes, descriptions, limit)

    @torch.no_grad()
    def predict_image(self, image_path: str, descriptions: Sequence[str], max_new_tokens: Optional[int] = None):
        """The raw predictions behind `ground_image`: (image info, [(answer text, boxes [1, 4] or None)])."""
        descriptions = check_descriptions(descriptions)
        try:
            image = load_image(str(image_path))
        except Exception as exc:
            raise FileNotFoundError(f"cannot read image {image_path}: {exc}") from exc
        pv, size = self.processor.image_pixels(image)
        video = {"path": str(image_path), "width": int(image.shape[1]), "height": int(image.shape[0]), "duration": 0.0, "fps": 0.0}
        prefix = image_prefix(image.shape[0], image.shape[1])
        visual = {"pixel_values": pv[None], "image_sizes": size[None]}
        suffixes = [question_suffix(instruction("rec", d)) for d in descriptions]
        limit = max_new_tokens or self.answer_budget([0.0], image=True)
        return video, self._predict(prefix, visual, suffixes, descriptions, limit)

    @torch.no_grad()
    def answer(self, video_path: str, question: str, max_new_tokens: Optional[int] = None, frames: Optional[int] = None) -> str:
        """Free-form answer to a question about a video (general QA; 64 tokens unless max_new_tokens)."""
        check_descriptions([question])
        pixels, sample, _ = self._video(video_path, frames)
        prefix = video_prefix(sample.num_frames, sample.duration, sample.times)
        ((text, _),) = self._predict(prefix, self._video_pixels(pixels), [question_suffix(question)], None, max_new_tokens or 64)
        return text

    # ---- steps -----------------------------------------------------------------------------------
    def _frames(self, frames: Optional[int]) -> int:
        """The frames to sample: the default, or `frames` checked against the model (core.config.check_frames)."""
        return self.frames if frames is None else check_frames(frames, self.model.config.st.num_queries, self.model.config.st.query_mode)

    def _video(self, video_path, frames):
        pixels, sample = read_video(str(video_path), self._frames(frames), force_sample=self.force_sample)
        video = {"path": str(video_path), "width": int(pixels.shape[2]), "height": int(pixels.shape[1]), "duration": sample.duration,
                 "fps": sample.fps}
        return pixels, sample, video

    def _video_pixels(self, pixels) -> dict:
        return {"pixel_values_videos": self.processor.video_pixels(pixels)[None]}

    def _tensor(self, ids) -> torch.Tensor:
        return torch.tensor([ids], dtype=torch.long, device=self.device)

    def answer_budget(self, frame_times: Sequence[float], image: bool = False) -> int:
        """max_new_tokens of a grounding answer on a clip sampled at `frame_times` (seconds): the
        constructor's, or the longest answer of the trained format (span; span + one box per frame
        without a decoder; REC_ANSWER for an image with a decoder)."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        tok = self.processor.tokenizer
        as_text = self.model.space_decoder is None
        return answer_token_budget(lambda text: len(tok(text).input_ids), frame_times, as_text, REC_ANSWER if image else None)

    def _predict(self, prefix, visual, suffixes, descriptions, max_new_tokens: int) -> List[tuple]:
        """Run the prefix once, then every suffix (prompt segments) on top of its cache, all in one batch
        (core.generation.generate_on_prefix) -> [(text, boxes or None)], each answer at most
        `max_new_tokens` tokens. descriptions: one per suffix (whose tokens the decoder reads), or None
        for plain questions (no boxes)."""
        model = self.model
        prefix_ids, layouts = self.processor.encode_with_layouts(prefix)
        layout = self.processor.grounding_layout(layouts)  # positions in prefix_ids, also those of prefix + suffix
        suffix_ids = [self.processor.encode(s) for s in suffixes]
        visual = {k: (v.to(self.device, model.dtype) if v.is_floating_point() else v.to(self.device)) for k, v in visual.items()}
        cache = DynamicCache()
        pre = model(input_ids=self._tensor(prefix_ids), past_key_values=cache, use_cache=True, output_hidden_states=True,
                    num_logits_to_keep=1, **visual)
        prefix_hidden = pre.hidden_states[-1]  # [1, Lp, D]
        rows = generate_on_prefix(causal_lm(model), cache, suffix_ids, max_new_tokens, self.stop_ids)
        answers = []
        for n, (ids, row) in enumerate(zip(suffix_ids, rows)):
            raw = self.processor.tokenizer.decode(row.token_ids, skip_special_tokens=True).strip()
            boxes = None
            if descriptions is not None:
                hidden = torch.cat([prefix_hidden, row.hidden[None]], dim=1)  # [1, Lp + Ls, D]
                boxes = self._boxes(prefix_ids + ids, hidden, descriptions[n], len(prefix_ids), layout)
            answers.append((raw, boxes))
        return answers

    def _tube(self, desc, raw, boxes, frame_times, video, span) -> Tube:
        if boxes is None and self.processor.query_mode == "none":
            return text_tube(desc, raw, frame_times, video, span)
        return assemble_tube(desc, raw, frame_times, boxes, video, span=span)

    def _boxes(self, ids, hidden, description, text_start, layout) -> Optional[torch.Tensor]:
        """The decoder's boxes [F, 4] (normalised cxcywh) for one prompt (ids, its last hidden states
        [1, L, D]), or None without a decoder. layout: the visual block as the processor laid it out."""
        if self.model.space_decoder is None:
            return None
        tok = self.processor.tokenizer
        positions = description_token_positions(ids, tok, description, start=text_start)
        if not positions:
            logger.warning("description %r not found among the prompt's tokens; boxes ignore it", description)
        text_index = torch.tensor([positions or [0]])
        text_mask = torch.tensor([[bool(positions)] * len(positions or [0])])
        index = self.model.grounding_index(torch.tensor([ids]), text_index, text_mask, layouts=[layout])
        return self.model.space_decoder(hidden, index)[0].float().cpu()
