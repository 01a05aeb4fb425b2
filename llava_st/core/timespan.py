"""Time spans: the one time contract, the one answer template, the one parser, the time instruction, snapping.

Times are seconds (float) everywhere outside the model. Training targets, inference parsing and eval all
go through `format_span` / `parse_span`, so the model is taught exactly what the parser reads.

The time contract, from converters to scores:
- A span (start, end) in seconds is closed: it holds the video frames k with start <= k / fps <= end.
  A span over frames first..last (0-based, inclusive) is written (first / fps, last / fps)
  (`frames_to_span`); its frames are read back with `span_to_frames` (nearest frame of each end), so
  `span_to_frames(frames_to_span(a, b, fps), fps) == (a, b)`. Every converter writes spans so, and a
  ground-truth box of frame k has t = k / fps (`frame_time`).
- Training snaps a span to the sampled frames (`snap_span`) and marks the sampled frames inside it
  (`span_frame_mask`, inclusive); the answer text is `format_span` of the snapped span.
- A parsed answer's span is a tube's span (core.tube), and the tube's boxes are those of the sampled frames
  inside it snapped (the frames training marked, despite the answer's 0.1-s rounding); eval turns the
  span into frames with `span_to_frames`.
- The metric presets (eval.metrics) read a ground-truth tube as the frames of its first and last box, and
  a predicted one as `span_to_frames` of its span. Each published evaluator then takes spans as
  end-exclusive frame intervals: [first, last + 1) for both (TubeDETR, HC-STVG's eval_hcvg.py), or
  [first, last + 1) for the prediction and [first, last) for the ground truth (STCAT), as their code does.
"""

import math
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

SPAN_TEMPLATE = "From {start:.1f}s to {end:.1f}s."

# Upstream LLaVA-Video's time instruction (llava/train/train.py, LazySupervisedDataset._get_item @ df17966),
# byte for byte, so prompts match the ones LLaVA-Video was trained with.
TIME_INSTRUCTION = (
    "The video lasts for {duration:.2f} seconds, and {num_frames} frames are uniformly sampled from it. "
    "These frames are located at {frame_times}.Please answer the following questions related to this video."
)


def frame_time(frame: int, fps: float) -> float:
    """Seconds of 0-based video frame `frame` at `fps` frames per second (rounded to 0.1 ms)."""
    return round(frame / fps, 4)


def frames_to_span(first: int, last: int, fps: float) -> tuple:
    """The span (seconds) of video frames first..last (0-based, inclusive): (first / fps, last / fps)."""
    if last < first:
        raise ValueError(f"span frames must have first <= last, got ({first!r}, {last!r})")
    return (frame_time(first, fps), frame_time(last, fps))


def span_to_frames(span, fps: float) -> Optional[tuple]:
    """(start, end) seconds -> (first, last) 0-based inclusive frame indices (nearest frame of each end,
    halves rounded to even as Python's round); None (no span) stays None."""
    if span is None:
        return None
    return (int(round(float(span[0]) * fps)), int(round(float(span[1]) * fps)))


def format_frame_times(frame_times: Sequence[float]) -> str:
    """Upstream's frame time list: "0.00s,0.50s,..." (seconds)."""
    return ",".join(f"{t:.2f}s" for t in frame_times)


def time_instruction(duration: float, frame_times: Sequence[float]) -> str:
    """Upstream's time instruction for a video of `duration` seconds sampled at `frame_times` (seconds)."""
    return TIME_INSTRUCTION.format(
        duration=duration, num_frames=len(frame_times), frame_times=format_frame_times(frame_times)
    )


def format_span(start: float, end: float) -> str:
    """The answer text for a span in seconds, e.g. "From 3.2s to 7.8s."."""
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise ValueError(f"span must be finite with start <= end, got ({start!r}, {end!r})")
    return SPAN_TEMPLATE.format(start=start, end=end)


@dataclass
class ParsedSpan:
    """Result of `parse_span`: `span` is (start, end) in seconds, or None with `status` saying why."""

    span: Optional[tuple]
    status: str

    @property
    def ok(self) -> bool:
        return self.span is not None


_NUM = r"(\d+(?:\.\d+)?|\.\d+)"
_CLOCK = r"(\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?)"
_TIME = rf"(?:{_CLOCK}|{_NUM})\s*(?:s|sec|secs|second|seconds)?"
_SEP = r"\s*(?:-|–|—|~|to|until|till|and|through|,)\s*"
_PAIR = re.compile(_TIME + _SEP + _TIME, re.IGNORECASE)


def _to_seconds(clock: Optional[str], number: Optional[str]) -> float:
    if clock:
        seconds = 0.0
        for part in clock.split(":"):
            seconds = seconds * 60 + float(part)
        return seconds
    return float(number)


def parse_span(text: str, duration: Optional[float] = None) -> ParsedSpan:
    """Read a time span (seconds) out of an answer.

    Accepts the project's template and the phrasings LLMs produce: "From 3.2s to 7.8s.", "3.2 - 7.8
    seconds", "between 3.2 and 7.8", "[3.2, 7.8]", "00:03 to 00:07.5", "starts at 3.2s and ends at
    7.8s". The first pair of times wins. A reversed pair is swapped; with `duration` the span is clipped
    to [0, duration]. Never raises: on failure `span` is None and `status` says why.
    """
    if not isinstance(text, str) or not text.strip():
        return ParsedSpan(None, "empty answer")
    cleaned = text.replace("\n", " ")
    # "starts at 3.2s and ends at 7.8s", "start: 3.2, end: 7.8"
    m = re.search(
        rf"start\w*\s*(?:at|:|=|is|time)?\s*(?:at|:)?\s*{_TIME}.*?end\w*\s*(?:at|:|=|is|time)?\s*(?:at|:)?\s*{_TIME}",
        cleaned,
        re.IGNORECASE,
    )
    if m is None:
        m = _PAIR.search(cleaned)
    if m is None:
        return ParsedSpan(None, f"no time span found in answer {text[:80]!r}")
    start = _to_seconds(m.group(1), m.group(2))
    end = _to_seconds(m.group(3), m.group(4))
    if not (math.isfinite(start) and math.isfinite(end)):
        return ParsedSpan(None, f"non-finite time span in answer {text[:80]!r}")
    if end < start:
        start, end = end, start
    if duration is not None:
        start, end = min(max(start, 0.0), duration), min(max(end, 0.0), duration)
    return ParsedSpan((start, end), "ok")


def snap_span(start: float, end: float, frame_times: Sequence[float]) -> tuple:
    """Move span boundaries (seconds) to the nearest sampled-frame times (paper §3.1.2).

    Returns (start, end) in seconds, both members of `frame_times`, start <= end.
    """
    times = np.asarray(frame_times, dtype=np.float64)
    if times.size == 0:
        raise ValueError("frame_times is empty")
    s = float(times[np.abs(times - start).argmin()])
    e = float(times[np.abs(times - end).argmin()])
    return (s, e) if s <= e else (e, s)


def span_frame_mask(start: float, end: float, frame_times: Sequence[float], tol: float = 1e-6) -> np.ndarray:
    """Boolean [F]: which sampled frames (times in seconds) lie inside [start, end], inclusive."""
    times = np.asarray(frame_times, dtype=np.float64)
    return (times >= start - tol) & (times <= end + tol)
