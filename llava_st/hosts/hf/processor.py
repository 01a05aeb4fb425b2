"""The transformers host's processor: LLaVA-OneVision's, with the query tokens laid out in the text.

LlavaOnevisionForConditionalGeneration scatters video features, in order, into the positions of the
`<video>` token: per frame P = ceil(g/2)^2 pooled tokens (g = image_size // patch_size), then one
`image_newline` per video. Writing query tokens at the positions of core.layout.block_layout (F frames of
P tokens, one newline) therefore gives the paper's layout (eq. 2) with the model's forward unchanged:

    interleave: <video>*P <r_0> <video>*P <r_1> ... <video>*P <r_{F-1}> <video>      (last one: newline)
    after:      <video>*(F*P) <video> <r_0> ... <r_{F-1}>
    none:       <video>*(F*P + 1)                                             (upstream's layout)

An image keeps the model's anyres token count (base grid + unpadded grid + row newlines: one "frame" of
the layout) and is followed by the terminal query <r_N> (no query in mode "none"). `encode_with_layouts`
returns the positions along with the ids, and `__call__` hands them to the model with the batch
(core.layout.GROUNDING_LAYOUT_KEYS of a GroundingIndex), so the model never reads the layout back from
the ids.

Prompts are lists of segments, tokenised one by one and concatenated, so training and inference (and a
KV-cached prefix shared by several descriptions) see identical ids:
    str -> text; VideoSegment(num_frames) -> video block; ImageSegment(height, width) -> image block.
"""

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from transformers import BatchFeature, LlavaOnevisionProcessor

from ...core.config import QUERY_MODES
from ...core.layout import BlockLayout, GroundingIndex, block_layout, layout_ids
from ...core.tokens import query_token_names

IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"


@dataclass(frozen=True)
class VideoSegment:
    """A video of `num_frames` sampled frames in a prompt."""

    num_frames: int


@dataclass(frozen=True)
class ImageSegment:
    """An image of `height` x `width` pixels (original size) in a prompt."""

    height: int
    width: int


Segment = Union[str, VideoSegment, ImageSegment]


class LlavaSTProcessor(LlavaOnevisionProcessor):
    """LlavaOnevisionProcessor that writes <r_i> query tokens into the expanded visual blocks.

    num_queries: N_v (the tokenizer holds <r_0> ... <r_{N_v}>). query_mode: core.config.QUERY_MODES.
    num_image_tokens: g * g, the vision tower's patch grid (g = image_size // patch_size).
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        video_processor=None,
        num_image_tokens=None,
        vision_feature_select_strategy="full",
        chat_template=None,
        image_token=IMAGE_TOKEN,
        video_token=VIDEO_TOKEN,
        num_queries: int = 64,
        query_mode: str = "interleave",
        **kwargs,
    ):
        if query_mode not in QUERY_MODES:
            raise ValueError(f"query_mode must be one of {QUERY_MODES}, got {query_mode!r}")
        self.num_queries = int(num_queries)
        self.query_mode = query_mode
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            num_image_tokens=num_image_tokens,
            vision_feature_select_strategy=vision_feature_select_strategy,
            chat_template=chat_template,
            image_token=image_token,
            video_token=video_token,
            **kwargs,
        )

    # ---- token ids -------------------------------------------------------------------------------
    def _token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {token!r} token; build the processor with llava_st.hosts.hf.loading")
        return int(tid)

    @property
    def image_token_id(self) -> int:
        return self._token_id(self.image_token)

    @property
    def video_token_id(self) -> int:
        return self._token_id(self.video_token)

    @property
    def query_token_ids(self) -> List[int]:
        """Ids of <r_0> ... <r_{N_v}> (the last is the terminal image query)."""
        return [self._token_id(name) for name in query_token_names(self.num_queries)]

    @property
    def tokens_per_frame(self) -> int:
        """P: pooled video tokens per frame (2x2 bilinear pooling of the g x g patch grid)."""
        return pooled_tokens_per_frame(int(math.isqrt(self.num_image_tokens)))

    # ---- visual blocks ---------------------------------------------------------------------------
    def video_layout(self, num_frames: int) -> BlockLayout:
        """The block-relative layout of a video of F sampled frames (core.layout.block_layout)."""
        if num_frames < 1:
            raise ValueError(f"a video needs at least one frame, got {num_frames}")
        if self.query_mode != "none" and num_frames > self.num_queries:
            raise ValueError(f"{num_frames} frames but the model has only {self.num_queries} video queries")
        return block_layout(num_frames, self.tokens_per_frame, self.query_mode, newlines=1)

    def image_layout(self, height: int, width: int) -> BlockLayout:
        """The block-relative layout of an image of height x width pixels: the model's anyres count as one
        frame, then the terminal query."""
        size = self.image_processor.size
        count = self._get_number_of_features(int(height), int(width), size["height"], size["width"])
        return block_layout(1, count, self.query_mode)

    def video_block_ids(self, num_frames: int) -> List[int]:
        """Token ids of a video of F sampled frames (see the module docstring for the layouts)."""
        layout = self.video_layout(num_frames)
        return layout_ids(layout, self.video_token_id, self.query_token_ids[:num_frames] if layout.query_index is not None else [])

    def image_block_ids(self, height: int, width: int) -> List[int]:
        """Token ids of an image of height x width pixels: the model's anyres count + terminal query."""
        layout = self.image_layout(height, width)
        return layout_ids(layout, self.image_token_id, self.query_token_ids[-1:] if layout.query_index is not None else [])

    def encode_with_layouts(self, segments: Sequence[Segment]) -> Tuple[List[int], List[BlockLayout]]:
        """Token ids of a prompt given as segments, and the layout of each of its visual blocks with
        absolute positions in those ids (text is tokenised without special-token additions)."""
        ids: List[int] = []
        layouts: List[BlockLayout] = []
        for seg in segments:
            if isinstance(seg, VideoSegment):
                layouts.append(self.video_layout(seg.num_frames).shifted(len(ids)))
                ids += self.video_block_ids(seg.num_frames)
            elif isinstance(seg, ImageSegment):
                layouts.append(self.image_layout(seg.height, seg.width).shifted(len(ids)))
                ids += self.image_block_ids(seg.height, seg.width)
            elif isinstance(seg, str):
                ids += self.tokenizer(seg, add_special_tokens=False)["input_ids"] if seg else []
            else:
                raise TypeError(f"unknown prompt segment {seg!r}")
        return ids, layouts

    def encode(self, segments: Sequence[Segment]) -> List[int]:
        """Token ids of a prompt given as segments (text is tokenised without special-token additions)."""
        return self.encode_with_layouts(segments)[0]

    def grounding_layout(self, layouts: Sequence[BlockLayout], item: int = 0) -> Optional[BlockLayout]:
        """The one visual block of a prompt the decoder reads (None without a block, or in mode "none");
        ValueError for several blocks (one visual input per grounded item)."""
        if self.query_mode == "none" or not layouts:
            return None
        if len(layouts) > 1:
            raise ValueError(f"item {item}: {len(layouts)} visual blocks with queries; one visual input per item")
        return layouts[0]

    # ---- pixels ----------------------------------------------------------------------------------
    def video_pixels(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 RGB frames [F, H, W, 3] -> pixel_values_videos [F, 3, S, S] (S = the tower's image size)."""
        return self.video_processor([np.asarray(frames)], return_tensors="pt")["pixel_values_videos"][0]

    def image_pixels(self, image: np.ndarray):
        """uint8 RGB image [H, W, 3] -> (pixel_values [patches, 3, S, S], image_sizes LongTensor [2] = (H, W))."""
        out = self.image_processor([np.asarray(image)], return_tensors="pt")
        return out["pixel_values"][0], out["image_sizes"][0]

    # ---- the transformers-style call ---------------------------------------------------------------
    def __call__(self, text=None, images=None, videos=None, return_tensors="pt", **kwargs) -> BatchFeature:
        """Like LlavaOnevisionProcessor: `text` (str or list) with `<video>` / `<image>` placeholders,
        consumed in order by `videos` (uint8 [F, H, W, 3] each) and `images` (uint8 [H, W, 3] each).
        Returns input_ids / attention_mask [B, L] (right padded), pixel_values_videos [V, F, 3, S, S],
        pixel_values [I, patches, 3, S, S] and image_sizes [I, 2] where present, and (modes with queries)
        the visual/query positions of each item (core.layout.GROUNDING_LAYOUT_KEYS: grounding_visual_index
        [B, F, S], grounding_visual_mask, grounding_query_index [B, F], grounding_frame_mask)."""
        texts = [text] if isinstance(text, str) else list(text)
        videos = list(videos or [])
        images = [np.asarray(im) for im in (images or [])]
        v_iter, i_iter = iter(videos), iter(images)
        rows, blocks = [], []
        for sample in texts:
            segments: List[Segment] = []
            for n, chunk in enumerate(sample.split(self.video_token)):
                if n:
                    segments.append(VideoSegment(len(next(v_iter))))
                for m, piece in enumerate(chunk.split(self.image_token)):
                    if m:
                        im = next(i_iter)
                        segments.append(ImageSegment(im.shape[0], im.shape[1]))
                    segments.append(piece)
            ids, layouts = self.encode_with_layouts(segments)
            rows.append(ids)
            blocks.append(self.grounding_layout(layouts, len(rows) - 1))
        data = pad_ids(rows, self.tokenizer.pad_token_id)
        if self.query_mode != "none":
            data.update(GroundingIndex.collate(blocks, [None] * len(rows)).layout_batch())
        if videos:
            data["pixel_values_videos"] = torch.stack([self.video_pixels(v) for v in videos])
        if images:
            out = self.image_processor(images, return_tensors="pt")
            data["pixel_values"], data["image_sizes"] = out["pixel_values"], out["image_sizes"]
        return BatchFeature(data=data, tensor_type=None)


def pooled_tokens_per_frame(grid: int) -> int:
    """P: video tokens per frame of a g x g patch grid after the model's 2x2 bilinear pooling, ceil(g/2)^2."""
    return math.ceil(grid / 2) ** 2


def pad_ids(rows: Sequence[Sequence[int]], pad_id: int) -> dict:
    """Right-pad token id lists -> {"input_ids": LongTensor [B, L], "attention_mask": LongTensor [B, L]}."""
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for b, row in enumerate(rows):
        input_ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[b, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}
