"""lmms-eval plug-in: the `llava_st` model, registered through the `lmms_eval.models` entry point.

    lmms-eval --model llava_st --model_args pretrained=CKPT[,frames=64,max_new_tokens=64,device=cuda] \\
        --tasks mvbench,videomme,egoschema,tempcompass
    lmms-eval --model llava_st --model_args pretrained=CKPT --include_path eval/lmms_tasks \\
        --tasks llava_st_stvg,llava_st_vtg,llava_st_rec

General video questions go through `Grounder.answer`, which lays the video out as in training (each
frame's visual tokens followed by its spatio-temporal query, then the time instruction and the question).
Grounding tasks (eval/lmms_tasks) set `llava_st_task: stvg|vtg|rec` in their generation_kwargs: the
request's context is then the description, and the response is the predicted tube as JSON, which the
task's process_results scores with llava_st.eval.metrics. pyproject.toml declares the entry point
`llava_st = llava_st.eval.lmms_plugin:MANIFEST` (no fork, no edit of lmms-eval).
"""

import json
import logging
import os
import tempfile
from typing import List, Optional, Tuple

import numpy as np
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest
from tqdm import tqdm

from ..data.video import write_video
from .drivers import ground_for_task

log = logging.getLogger(__name__)

GROUNDING_KEY = "llava_st_task"
FRAMES_FPS = 3.0  # frame-folder videos (MVBench's image sequences) are taken as 3 fps, as lmms-eval's llava_vid does


class LlavaST(lmms):
    """lmms-eval model over a llava_st checkpoint of either host (llava_st.api.load_grounder).

    pretrained: checkpoint directory; device: default cuda:LOCAL_RANK when available, else cpu; frames:
    frames sampled per video (default: the checkpoint's); max_new_tokens: default answer length limit."""

    is_simple = True

    def __init__(self, pretrained: str, device: Optional[str] = None, frames: Optional[int] = None, max_new_tokens: int = 64,
                 batch_size: int = 1, **kwargs):
        super().__init__()
        if kwargs:
            log.warning("llava_st: ignoring unknown model_args %s", sorted(kwargs))
        if int(batch_size) != 1:
            raise ValueError(f"llava_st: batch_size must be 1 (descriptions of one video share its prefix), got {batch_size}")
        import torch

        from ..api import load_grounder

        self._rank = int(os.environ.get("RANK", 0))
        self._world_size = int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", 0))
        self.device = device or (f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        self.frames = int(frames) if frames else None
        self.max_new_tokens = int(max_new_tokens)
        self.grounder = load_grounder(pretrained, device=self.device)

    def generate_until(self, requests: List[Instance]) -> List[str]:
        out = []
        for request in tqdm(requests, disable=self.rank != 0, desc="llava_st"):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args[:6]
            visuals = doc_to_visual(self.task_dict[task][split][doc_id])
            out.append(self._respond(context, dict(gen_kwargs or {}), visuals))
        return out

    def _respond(self, context: str, gen_kwargs: dict, visuals) -> str:
        grounding = gen_kwargs.pop(GROUNDING_KEY, None)
        if grounding:
            tube = ground_for_task(self.grounder, grounding, _single_path(visuals), [context], self.frames)[0]
            return json.dumps(tube)
        max_new = int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens)
        with _as_video(visuals) as path:
            return self.grounder.answer(path, context, max_new_tokens=max_new, frames=self.frames)

    def loglikelihood(self, requests: List[Instance]) -> List[Tuple[float, bool]]:
        raise NotImplementedError("llava_st answers by generation: use the generate_until variant of the task")

    def generate_until_multi_round(self, requests) -> List[str]:
        raise NotImplementedError("llava_st: multi-round generation is not supported")


def _single_path(visuals) -> str:
    if isinstance(visuals, (list, tuple)) and len(visuals) == 1 and isinstance(visuals[0], str):
        return visuals[0]
    if isinstance(visuals, str):
        return visuals
    raise ValueError(f"llava_st grounding tasks need one video/image path per document, got {type(visuals).__name__} of {len(visuals)}")


class _as_video:
    """Context manager: a video path for lmms-eval visuals (one video path, a frame folder, or a list of
    frames as paths or PIL images, written to a temporary mp4 at FRAMES_FPS)."""

    def __init__(self, visuals):
        self.visuals = [visuals] if isinstance(visuals, str) else list(visuals)
        self.tmp = None

    def __enter__(self) -> str:
        v = self.visuals
        if len(v) == 1 and isinstance(v[0], str) and not os.path.isdir(v[0]):
            return v[0]
        if len(v) == 1 and isinstance(v[0], str):
            v = sorted(os.path.join(v[0], f) for f in os.listdir(v[0]))
        frames_rgb = np.stack([_rgb(x) for x in v])
        self.tmp = tempfile.NamedTemporaryFile(suffix=".mp4", delete=False)
        self.tmp.close()
        return str(write_video(self.tmp.name, frames_rgb, FRAMES_FPS))

    def __exit__(self, *exc):
        if self.tmp is not None:
            os.unlink(self.tmp.name)


def _rgb(frame) -> np.ndarray:
    from PIL import Image

    image = Image.open(frame) if isinstance(frame, str) else frame
    return np.asarray(image.convert("RGB"))


MANIFEST = ModelManifest(model_id="llava_st", simple_class_path="llava_st.eval.lmms_plugin.LlavaST")
