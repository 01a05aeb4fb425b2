"""Frame sampling, video reading and mp4 writing: the one implementation training, inference, eval, the
synthetic benchmark, the synthesis Annotator and the tube drawer share.

`sample_frames` follows upstream LLaVA-Video (llava/utils.py::process_video_with_decord @ df17966):
take every round(fps / video_fps)-th frame; if that gives more than `frames_upbound` frames, or
`force_sample` is set, take `np.linspace(0, total - 1, frames_upbound)` as ints instead. Frame times are
`index / fps` seconds (upstream divides by the step in the first branch, which equals this only at
video_fps = 1).

Two readers decode the frames `sample_frames` picks:
- `read_video` (the model's frames: training, inference, eval) with decord, as upstream does, so that a
  model sees the frames upstream's loader gives it;
- `read_span_frames` (the synthesis Annotator's frames, which go to a detector) with PyAV, decoding in the
  calling thread. decord decodes in a thread of its own and hands frames over to the caller; with a core
  to spare that runs beside the caller, but when every core is busy (one synthesis rank per core) the
  hand-over costs more than the decoding: on a 2-core machine a 320x240 30-fps clip sampled at 2 fps
  took 17 ms alone and 58 ms with a second process decoding beside it, 57 ms pinned to one core, while
  PyAV took 17 ms in all three cases. Both give bit-identical RGB frames on the videos tested
  (tests/test_video_span.py), and the frame index of a decoded frame is its presentation time times fps.
"""

import os
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


def read_span_frames(path: str, span, sample_fps: float):
    """Decode the frames inside `span` ([start, end] seconds, inclusive) of the frames `sample_frames`
    picks at `sample_fps` (no upper bound), with PyAV in the calling thread (module docstring).

    Seeks to the key frame before the first wanted frame and decodes forward to the last one, converting
    only the wanted frames to RGB. Returns (frames uint8 [N, H, W, 3] RGB, times float64 [N] seconds,
    video fps, duration seconds = total frames / fps). Raises VideoReadError naming the file.
    """
    if not os.path.isfile(path):
        raise VideoReadError(f"video not found: {path}")
    try:
        import av

        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type, stream.codec_context.thread_count = "NONE", 1
            total = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
            sample = sample_frames(total, float(stream.average_rate or 0), frames_upbound=0, video_fps=sample_fps)
            inside = (sample.times >= span[0] - 1e-6) & (sample.times <= span[1] + 1e-6)
            indices = sample.indices[inside]
            frames = _decode_indices(container, stream, indices.tolist(), path)
    except VideoReadError:
        raise
    except Exception as exc:  # PyAV raises av.FFmpegError subclasses, ValueError for a bad stream
        raise VideoReadError(f"cannot decode video {path}: {exc}") from exc
    return frames, sample.times[inside], sample.fps, sample.duration


def _decode_indices(container, stream, indices, path: str) -> np.ndarray:
    """uint8 [N, H, W, 3] RGB frames at the ascending frame `indices` of `stream` (index = presentation
    time * average fps, counted from the stream's first frame)."""
    if not indices:
        return np.zeros((0, 1, 1, 3), np.uint8)
    fps, start = stream.average_rate, stream.start_time or 0
    container.seek(start + int(indices[0] / fps / stream.time_base), stream=stream, backward=True)
    wanted, frames = set(indices), {}
    for frame in container.decode(stream):
        if frame.pts is None:
            raise VideoReadError(f"cannot decode video {path}: a frame without a presentation time")
        index = round((frame.pts - start) * stream.time_base * fps)
        if index in wanted:
            frames[index] = frame.to_ndarray(format="rgb24")
        if index >= indices[-1]:
            break
    missing = [i for i in indices if i not in frames]
    if missing:
        raise VideoReadError(f"cannot decode video {path}: frames {missing[:5]} not found")
    return np.stack([frames[i] for i in indices])


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
