"""Grounding with the transformers host (paper §3.1.5): prefill, describe, generate, decode boxes.

For a video the prefix (system, video block with queries, time instruction) is run once; its KV cache
and last hidden states serve every description: per description only the instruction is run on top of
the cache, the answer is generated greedily, the decoder reads the prefix's visual/query states and the
instruction's description states, and the cache is cropped back to the prefix.
"""

import logging
from typing import List, Optional, Sequence

import torch
from transformers import DynamicCache

from ...core.boxtext import answer_token_budget
from ...core.config import check_frames
from ...core.layout import description_token_positions
from ...core.tube import assemble_tube, text_tube
from ...data.templates import REC_ANSWER, instruction
from ...data.video import read_video
from .data import load_image
from .prompt import image_prefix, question_suffix, video_prefix

logger = logging.getLogger(__name__)


def check_descriptions(descriptions: Sequence[str]) -> List[str]:
    """The descriptions as a list; ValueError naming the first empty or non-text one."""
    if isinstance(descriptions, str):
        descriptions = [descriptions]
    out = list(descriptions)
    if not out:
        raise ValueError("no description given")
    for n, d in enumerate(out):
        if not isinstance(d, str) or not d.strip():
            raise ValueError(f"description {n} is empty: {d!r}")
    return out


class HFGrounder:
    """Grounder over a transformers-host model (LlavaSTOnevisionForConditionalGeneration) and its processor.

    frames: frames sampled per video by default (data.video.read_video's frames_upbound, force_sample as
    in training); max_new_tokens: answer length limit (tokens) for grounding; None derives it from the
    answer format and the clip (core.boxtext.answer_token_budget), so no trained answer can be cut.
    """

    def __init__(self, model, processor, frames: Optional[int] = None, max_new_tokens: Optional[int] = None, force_sample: bool = True):
        self.model = model.eval()
        self.processor = processor
        self.frames = min(model.st.num_queries, 64) if frames is None else check_frames(frames, model.st.num_queries, model.st.query_mode)
        self.max_new_tokens = max_new_tokens
        self.force_sample = force_sample
        tok = processor.tokenizer
        self.stop_ids = {i for i in (tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>"))
                         if i is not None}

    @property
    def device(self):
        return next(self.model.parameters()).device

    # ---- public API ------------------------------------------------------------------------------
    @torch.no_grad()
    def ground(self, video_path: str, descriptions: Sequence[str], frames: Optional[int] = None, task: str = "stvg") -> List[dict]:
        """One tube per description (core/tube.py contract: span in seconds, per-frame pixel boxes of the
        original video). task: "stvg" or "vtg" (the instruction template). Raises VideoReadError for a
        missing or unreadable video and ValueError for an empty description."""
        descriptions = check_descriptions(descriptions)
        times, video, answers = self.predict_video(video_path, descriptions, frames, task)
        return [self._tube(d, raw, boxes, times, video, None) for d, (raw, boxes) in zip(descriptions, answers)]

    @torch.no_grad()
    def ground_image(self, image_path: str, descriptions: Sequence[str]) -> List[dict]:
        """One single-frame tube (t = 0, span [0, 0]) per description for an image (REC)."""
        descriptions = check_descriptions(descriptions)
        video, answers = self.predict_image(image_path, descriptions)
        return [self._tube(d, raw, boxes, [0.0], video, (0.0, 0.0)) for d, (raw, boxes) in zip(descriptions, answers)]

    @torch.no_grad()
    def predict_video(self, video_path: str, descriptions: Sequence[str], frames: Optional[int] = None, task: str = "stvg"):
        """The raw predictions behind `ground`: (frame_times [F] seconds, video info, [(answer text,
        boxes [F, 4] normalised cxcywh for every sampled frame, or None without a decoder)])."""
        descriptions = check_descriptions(descriptions)
        pixels, sample = read_video(str(video_path), self._frames(frames), force_sample=self.force_sample)
        video = {"path": str(video_path), "width": int(pixels.shape[2]), "height": int(pixels.shape[1]), "duration": sample.duration,
                 "fps": sample.fps}
        prefix = video_prefix(sample.num_frames, sample.duration, sample.times)
        visual = {"pixel_values_videos": self.processor.video_pixels(pixels)[None]}
        return sample.times.tolist(), video, self._predict(prefix, visual, descriptions, task, self.answer_budget(sample.times))

    @torch.no_grad()
    def predict_image(self, image_path: str, descriptions: Sequence[str]):
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
        return video, self._predict(prefix, visual, descriptions, "rec", self.answer_budget([0.0], image=True))

    @torch.no_grad()
    def answer(self, video_path: str, question: str, max_new_tokens: int = 64, frames: Optional[int] = None) -> str:
        """Free-form answer to a question about a video (general QA)."""
        check_descriptions([question])
        pixels, sample = read_video(str(video_path), self._frames(frames), force_sample=self.force_sample)
        ids = self.processor.encode(video_prefix(sample.num_frames, sample.duration, sample.times) + question_suffix(question))
        out = self.model(input_ids=self._tensor(ids),
                         pixel_values_videos=self.processor.video_pixels(pixels)[None].to(self.device, self.model.dtype),
                         past_key_values=DynamicCache(), use_cache=True)
        return self._generate(out, max_new_tokens)

    # ---- steps -----------------------------------------------------------------------------------
    def _frames(self, frames: Optional[int]) -> int:
        """The frames to sample: the default, or `frames` checked against the model (core.config.check_frames)."""
        return self.frames if frames is None else check_frames(frames, self.model.st.num_queries, self.model.st.query_mode)

    def _tensor(self, ids) -> torch.Tensor:
        return torch.tensor([ids], dtype=torch.long, device=self.device)

    def answer_budget(self, frame_times: Sequence[float], image: bool = False) -> int:
        """max_new_tokens of a grounding answer on a clip sampled at `frame_times` (seconds): the
        constructor's, or the longest answer of the trained format (span; span + one box per frame
        without a decoder; REC_ANSWER for an image with a decoder)."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        tok = self.processor.tokenizer
        as_text = self.model.st_decoder is None
        return answer_token_budget(lambda text: len(tok(text).input_ids), frame_times, as_text, REC_ANSWER if image else None)

    def _predict(self, prefix, visual, descriptions, task, max_new_tokens: int) -> List[tuple]:
        """Run the prefix once, then each description on top of its cache -> [(text, boxes or None)],
        each answer at most `max_new_tokens` tokens."""
        model = self.model
        prefix_ids = self.processor.encode(prefix)
        visual = {k: (v.to(self.device, model.dtype) if v.is_floating_point() else v.to(self.device)) for k, v in visual.items()}
        cache = DynamicCache()
        pre = model(input_ids=self._tensor(prefix_ids), past_key_values=cache, use_cache=True, output_hidden_states=True, **visual)
        prefix_hidden = pre.hidden_states[-1]  # [1, Lp, D]
        answers = []
        for desc in descriptions:
            suffix_ids = self.processor.encode(question_suffix(instruction(task, desc)))
            out = model(input_ids=self._tensor(suffix_ids), past_key_values=cache, use_cache=True, output_hidden_states=True)
            hidden = torch.cat([prefix_hidden, out.hidden_states[-1]], dim=1)  # [1, Lp + Ls, D]
            raw = self._generate(out, max_new_tokens)
            cache.crop(len(prefix_ids))
            answers.append((raw, self._boxes(prefix_ids + suffix_ids, hidden, desc, len(prefix_ids))))
        return answers

    def _tube(self, desc, raw, boxes, frame_times, video, span) -> dict:
        if boxes is None and self.processor.query_mode == "none":
            return text_tube(desc, raw, frame_times, video, span)
        return assemble_tube(desc, raw, frame_times, boxes, video, span=span)

    def _boxes(self, ids, hidden, description, text_start) -> Optional[torch.Tensor]:
        """The decoder's boxes [F, 4] (normalised cxcywh) for one prompt, or None without a decoder."""
        if self.model.st_decoder is None:
            return None
        tok = self.processor.tokenizer
        positions = description_token_positions(ids, tok, description, start=text_start)
        if not positions:
            logger.warning("description %r not found among the prompt's tokens; boxes ignore it", description)
        text_index = torch.tensor([positions or [0]])
        text_mask = torch.tensor([[bool(positions)] * len(positions or [0])])
        index = self.model.grounding_index(torch.tensor([ids]), text_index, text_mask)
        return self.model.st_decoder(hidden, index)[0].float().cpu()

    def _generate(self, out, max_new_tokens: int) -> str:
        """Greedy decoding on top of `out` (its logits and its cache); the answer text without the stop token."""
        cache = out.past_key_values
        tokens = []
        next_id = int(out.logits[0, -1].argmax())
        while next_id not in self.stop_ids and len(tokens) < max_new_tokens:
            tokens.append(next_id)
            step = self.model(input_ids=self._tensor([next_id]), past_key_values=cache, use_cache=True)
            next_id = int(step.logits[0, -1].argmax())
        return self.processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
