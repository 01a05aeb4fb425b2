"""The Grounder contract (core.grounder.Grounder) on the LLaVA-NeXT host.

Prompts follow upstream LLaVA-Video's training format (llava/train/train.py @ df17966, qwen_1_5
template, `<image>\\n{time instruction}\\n{question}`), split so the video block comes first and is
shared by every description, all answered in one batch (generation.py -> core.generation).
"""

from typing import List, Optional, Sequence

import torch
from llava.constants import DEFAULT_IMAGE_TOKEN
from llava.mm_utils import process_images, tokenizer_image_token

from ...core.boxes import ImageFrame
from ...core.boxtext import answer_token_budget
from ...core.config import check_frames, default_frames
from ...core.generation import stop_token_ids
from ...core.grounder import Tube, check_descriptions
from ...core.layout import description_token_positions
from ...core.prompt import prefix_parts, suffix_text
from ...core.timespan import time_instruction
from ...core.tube import assemble_tube, text_tube
from ...data.templates import REC_ANSWER, instruction
from ...data.video import read_video
from .generation import Suffix, generate_grounded
from .loading import load_st_model


def prefix_text(time_text: Optional[str]) -> str:
    """core.prompt's prefix with upstream's "<image>" placeholder as the visual block (the time
    instruction after it for a video, None for an image)."""
    return "".join(prefix_parts(DEFAULT_IMAGE_TOKEN, time_text))


class LlavaNextGrounder:
    """Grounding and QA with a LlavaSTQwenForCausalLM (implements core.grounder.Grounder).

    frames: default number of sampled frames per video (None: core.config.default_frames, upstream's
    frames_upbound of the checkpoint, at most the number of queries). max_new_tokens: default answer
    length (else, for grounding, the longest answer of the trained format on the clip:
    core.boxtext.answer_token_budget; 64 for QA). Boxes in the returned tubes are pixels of the original
    video/image plus normalised xyxy.
    """

    def __init__(self, model, tokenizer, image_processor, frames: Optional[int] = None, max_new_tokens: Optional[int] = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        default = default_frames(model.config.st_num_queries, getattr(model.config, "frames_upbound", None))
        self.frames = default if frames is None else self._check(frames)
        self.force_sample = bool(getattr(model.config, "force_sample", True))
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_pretrained(cls, path, device: str = "cpu", torch_dtype: Optional[torch.dtype] = None, frames: Optional[int] = None,
                        max_new_tokens: Optional[int] = None):
        """A grounder for an ST checkpoint (loading.load_st_model); torch_dtype defaults to float32."""
        tokenizer, model, image_processor = load_st_model(path, device=device, torch_dtype=torch_dtype or torch.float32)
        return cls(model, tokenizer, image_processor, frames, max_new_tokens)

    def ground(self, video_path: str, descriptions: Sequence[str], frames: Optional[int] = None, max_new_tokens: Optional[int] = None,
               task: str = "stvg") -> List[Tube]:
        """One tube (core/tube.py contract) per description; the video is encoded once and the
        descriptions answered in one batch. task: "stvg" or "vtg" (the instruction template). Raises
        VideoReadError naming a missing or unreadable video and ValueError for an empty description."""
        descriptions = check_descriptions(descriptions)
        suffixes = [self._suffix(instruction(task, d), d) for d in descriptions]
        pixels, sample, video = self._video(video_path, frames)
        prefix = prefix_text(time_instruction(sample.duration, sample.times))
        limit = max_new_tokens or self.answer_budget(sample.times)
        answers = self._generate(prefix, [pixels], ["video"], [video["size"]], suffixes, limit)
        times = sample.times.tolist()
        return [self._tube(d, text, times, boxes, video["info"]) for d, (text, boxes) in zip(descriptions, answers)]

    def ground_image(self, image_path: str, descriptions: Sequence[str], max_new_tokens: Optional[int] = None) -> List[Tube]:
        """One tube per description with a single frame at t = 0 (span [0, 0]); its box in pixels of the
        original image under the checkpoint's image_aspect_ratio (core.boxes.ImageFrame)."""
        from PIL import Image

        descriptions = check_descriptions(descriptions)
        picture = Image.open(image_path).convert("RGB")
        pixels = process_images([picture], self.image_processor, self.model.config)[0].to(self.model.device, self.model.dtype)
        info = {"path": str(image_path), "width": picture.width, "height": picture.height, "duration": 0.0, "fps": 0.0}
        suffixes = [self._suffix(instruction("rec", d), d) for d in descriptions]
        answers = self._generate(prefix_text(None), [pixels], ["image"], [picture.size], suffixes,
                                 max_new_tokens or self.answer_budget([0.0], image=True))
        frame = ImageFrame.for_aspect_ratio(picture.width, picture.height, getattr(self.model.config, "image_aspect_ratio", "anyres"))
        return [self._tube(d, text, [0.0], boxes, info, span=(0.0, 0.0), frame=frame) for d, (text, boxes) in zip(descriptions, answers)]

    def answer(self, video_path: str, question: str, max_new_tokens: Optional[int] = None, frames: Optional[int] = None) -> str:
        """Plain video QA: the generated answer text."""
        check_descriptions([question])
        pixels, sample, video = self._video(video_path, frames)
        prefix = prefix_text(time_instruction(sample.duration, sample.times))
        suffix = Suffix(torch.tensor(self.tokenizer(suffix_text(question)).input_ids), [])
        return self._generate(prefix, [pixels], ["video"], [video["size"]], [suffix], max_new_tokens or self.max_new_tokens or 64)[0][0]

    def answer_budget(self, frame_times: Sequence[float], image: bool = False) -> int:
        """max_new_tokens of a grounding answer on a clip sampled at `frame_times` (seconds): the
        constructor's, or the longest answer of the trained format (span; span + one box per frame
        without a decoder; REC_ANSWER for an image with a decoder)."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        as_text = self.model.space_decoder is None
        tok = self.tokenizer
        return answer_token_budget(lambda text: len(tok(text).input_ids), frame_times, as_text, REC_ANSWER if image else None)

    def _tube(self, description, text, frame_times, boxes, info, span=None, frame=None) -> dict:
        """The tube of one answer; a model without decoder (boxes-as-text ablation) gives its boxes in the
        text (core.boxtext). `frame`: where an image lies in the frame the model saw."""
        if self.model.space_decoder is None:
            return text_tube(description, text, frame_times, info, span=span, frame=frame)
        return assemble_tube(description, text, frame_times, boxes, info, span=span, frame=frame)

    def _video(self, video_path, frames):
        count = self.frames if frames is None else self._check(frames)
        array, sample = read_video(str(video_path), frames_upbound=count, force_sample=self.force_sample)
        pixels = self.image_processor.preprocess(array, return_tensors="pt")["pixel_values"]
        H, W = array.shape[1:3]
        info = {"path": str(video_path), "width": W, "height": H, "duration": sample.duration, "fps": sample.fps}
        return pixels.to(self.model.device, self.model.dtype), sample, {"info": info, "size": (W, H)}

    def _check(self, frames) -> int:
        """`frames` checked against the model's queries (core.config.check_frames), before any video is read."""
        return check_frames(frames, self.model.config.st_num_queries, self.model.config.st_query_mode)

    def _suffix(self, question: str, description: str) -> Suffix:
        ids = self.tokenizer(suffix_text(question)).input_ids
        return Suffix(torch.tensor(ids), description_token_positions(ids, self.tokenizer, description))

    def _generate(self, prefix, images, modalities, sizes, suffixes, max_new_tokens):
        prefix_ids = tokenizer_image_token(prefix, self.tokenizer, return_tensors="pt")
        answers = generate_grounded(self.model, prefix_ids, images, modalities, sizes, suffixes, max_new_tokens,
                                    stop_token_ids(self.tokenizer))
        return [(self.tokenizer.decode(a.token_ids, skip_special_tokens=True).strip(), a.boxes_cxcywh) for a in answers]
