"""Annotator (paper §3.2.1): Grounding-DINO boxes for the Analyzer's target on every sampled frame
inside the span.

Frames inside `span` are sampled at `sample_fps` (frame index i of the video has time i / fps seconds;
decoded by data.video.read_span_frames);
each is passed with the text prompt "<target>." to GroundingDinoForObjectDetection (transformers), and
every box scoring at least `box_threshold` (0.3 in the paper) is kept. The record gains
    detections: [{"t": seconds, "boxes": [[x0, y0, x1, y1] pixels of the original frame, ...],
                  "scores": [float, ...]}]  (one entry per sampled frame, possibly empty)
and the video's `width`, `height`, `fps`, `duration`. Drops: "video unreadable", "path outside data root"
(the one data-root rule, `data.paths.resolve_media`: no `..`, absolute path or link leading out).
"""

import logging
from typing import List

import numpy as np
import torch

from ..paths import MediaPathError, resolve_media
from ..video import VideoReadError, read_span_frames
from .stage import Dropped, need_span, need_text

logger = logging.getLogger(__name__)


class Annotator:
    """Stage: record with `video`, `span`, `target` -> record with per-frame `detections`.

    `model_path`: a local GroundingDINO checkpoint directory (model + processor, e.g. a saved
    IDEA-Research/grounding-dino-tiny); `data_root`: the directory video paths are relative to.
    """

    def __init__(
        self,
        model_path: str,
        data_root: str = ".",
        sample_fps: float = 2.0,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
        batch_size: int = 8,
        device: str = "cpu",
    ):
        from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

        self.processor = GroundingDinoProcessor.from_pretrained(model_path)
        self.model = GroundingDinoForObjectDetection.from_pretrained(model_path, use_safetensors=True).to(device).eval()
        self.data_root, self.sample_fps, self.device = data_root, sample_fps, device
        self.box_threshold, self.text_threshold, self.batch_size = box_threshold, text_threshold, batch_size

    @torch.no_grad()
    def detect(self, frames: np.ndarray, phrase: str) -> List[dict]:
        """Boxes for `phrase` in each frame (uint8 [N, H, W, 3]): [{"boxes": [[x0, y0, x1, y1] pixels],
        "scores": [...]}] per frame, scores >= box_threshold, highest first."""
        from PIL import Image

        text = phrase.strip().rstrip(".").lower() + "."
        results = []
        for start in range(0, len(frames), self.batch_size):
            chunk = [Image.fromarray(f) for f in frames[start : start + self.batch_size]]
            inputs = self.processor(images=chunk, text=[text] * len(chunk), return_tensors="pt").to(self.device)
            outputs = self.model(**inputs)
            sizes = [(im.height, im.width) for im in chunk]
            found = self.processor.post_process_grounded_object_detection(
                outputs,
                inputs["input_ids"],
                box_threshold=self.box_threshold,
                text_threshold=self.text_threshold,
                target_sizes=sizes,
            )
            for det, (h, w) in zip(found, sizes):
                order = det["scores"].argsort(descending=True)
                boxes = det["boxes"][order].clamp(min=0)
                boxes[:, 0::2] = boxes[:, 0::2].clamp(max=w)
                boxes[:, 1::2] = boxes[:, 1::2].clamp(max=h)
                results.append(
                    {
                        "boxes": [[round(float(v), 2) for v in b] for b in boxes.tolist()],
                        "scores": [round(float(s), 4) for s in det["scores"][order].tolist()],
                    }
                )
        return results

    reads = ("video", "span", "target")

    def __call__(self, record: dict) -> dict:
        try:
            path = str(resolve_media(self.data_root, record.get("video"), record.get("id"), "video"))
        except MediaPathError as e:  # bad input: logged once with file, line, id and field (stage.apply_stage)
            raise Dropped("path outside data root", f"field={e.field}: {e.reason}") from e
        span = need_span(record)  # checked before any decoding: a bad span is bad input, not a bad video
        target = need_text(record, "target")
        try:
            frames, times, fps, duration = read_span_frames(path, span, self.sample_fps)
        except VideoReadError as e:
            logger.warning("id=%s field=video: %s", record.get("id"), e)
            raise Dropped("video unreadable") from e
        detections = [{"t": round(float(t), 4), **d} for t, d in zip(times, self.detect(frames, target))]
        height, width = (
            (frames.shape[1], frames.shape[2]) if len(frames) else (record.get("height"), record.get("width"))
        )
        return {
            **record,
            "detections": detections,
            "width": width,
            "height": height,
            "fps": round(fps, 4),
            "duration": round(duration, 4),
        }
