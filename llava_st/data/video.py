"""Frame sampling, video reading and mp4 writing: the one implementation training, inference, eval, the
synthetic benchmark and the tube drawer share.

`sample_frames` follows upstream LLaVA-Video (llava/utils.py::process_video_with_decord @ df17966):
take every round(fps / video_fps)-th frame; if that gives more than `frames_upbound` frames, or
`force_sample` is set, take `np.linspace(0, total - 1, frames_upbound)` as ints instead. Frame times are
`index / fps` seconds (upstream divides by the step in the first branch, which equals this only at
video_fps = 1).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class FrameSample:
    """indices: int64 [F] frame indices of the original video; times: float64 [F] seconds;
    duration: seconds (total_frames / fps); fps: frames per second of the original video."""

    indices: np.ndarray
    times: np.ndarray
    duration: float
    fps: float

    @property
    def num_frames(self) -> int:
        return int(self.indices.shape[0])


def sample_frames(
    total_frames: int, fps: float, frames_upbound: int = 64, video_fps: float = 1.0, force_sample: bool = False
) -> FrameSample:
    """Choose the frames of a video of `total_frames` frames at `fps` (see module docstring)."""
    if total_frames < 1:
        raise ValueError(f"video has no frames (total_frames={total_frames})")
    if not fps or fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    step = max(int(round(fps / video_fps)), 1)
    indices = np.arange(0, total_frames, step, dtype=np.int64)
    if frames_upbound > 0 and (len(indices) > frames_upbound or force_sample):
        indices = np.linspace(0, total_frames - 1, frames_upbound, dtype=int).astype(np.int64)
    return FrameSample(indices, indices / float(fps), total_frames / float(fps), float(fps))


class VideoReadError(RuntimeError):
    """A video file is missing or cannot be decoded; the message names the file and the cause."""


def read_video(path: str, frames_upbound: int = 64, video_fps: float = 1.0, force_sample: bool = False):
    """Decode the sampled frames of a video with decord.

    Returns (frames uint8 [F, H, W, 3] RGB, FrameSample). Raises VideoReadError naming the file.
    """
    import os

    if not os.path.isfile(path):
        raise VideoReadError(f"video not found: {path}")
    try:
        from decord import VideoReader, cpu

        vr = VideoReader(path, ctx=cpu(0), num_threads=1)
        sample = sample_frames(len(vr), vr.get_avg_fps(), frames_upbound, video_fps, force_sample)
        frames = vr.get_batch(sample.indices.tolist()).asnumpy()
    except VideoReadError:
        raise
    except Exception as exc:  # decord raises its own DECORDError and RuntimeError alike
        raise VideoReadError(f"cannot decode video {path}: {exc}") from exc
    return frames, sample


def write_video(path, frames: np.ndarray, fps: float, bgr: bool = False) -> Path:
    """Write uint8 frames [T, H, W, 3] (RGB, or BGR with `bgr`) to an mp4 (MPEG-4 part 2, readable by
    decord, PyAV and opencv) at `fps` frames per second, creating its folder. Returns the path."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"opencv cannot write {path}")
    for frame in frames:
        writer.write(np.ascontiguousarray(frame if bgr else frame[..., ::-1]))
    writer.release()
    return path
