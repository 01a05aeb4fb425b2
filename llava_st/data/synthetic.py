"""The synthetic STG benchmark: short videos of moving shapes with exact tubes.

Each STVG sample is a video of coloured shapes (square, circle, triangle; small or large) that move left,
right, up, down or stay still over a noisy grey background. The target appears at a known frame and
disappears at a known frame; one or more distractors are visible throughout. The caption names the
target's size, colour, shape and motion; no distractor has the target's colour and shape, so the
caption singles the target out. Captions come in a declarative ("The small red circle moves left.") and
a question form ("Which small red circle is moving left?").

REC samples are single frames (png) of the same kind of scene, captioned without the motion.

Boxes are the tight pixel bounds of the drawn shape, `xyxy` with an exclusive end (x1 = last column + 1),
for every frame of the video inside the span; shapes never overlap, so the drawn pixels are exactly the
box's content. Everything is deterministic in (seed, index): sample i is the same whatever the count.
"""

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..core.timespan import format_span, snap_span
from .templates import REC_ANSWER, instruction
from .video import sample_frames

log = logging.getLogger(__name__)

COLORS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "white": (240, 240, 240),
    "purple": (150, 60, 205),
}
SHAPES = ("square", "circle", "triangle")
SIZES = {"small": 0.16, "large": 0.28}  # side as a fraction of min(width, height)
MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}
MOTION_TRAVEL = 0.35  # distance travelled over the visible interval, fraction of the frame side
BACKGROUND = 96
NOISE = 6
MARGIN = 2  # pixels kept free between any two shapes
TASKS = ("stvg", "rec")


@dataclass
class SyntheticConfig:
    """width, height: pixels; fps: frames per second; num_frames: frames per video (duration =
    num_frames / fps seconds); frames: the number of frames a model samples (frames_upbound), used to
    snap the answer span as training does; max_distractors: 1..max_distractors other shapes (0: the
    target alone, a pure localisation clip);
    min_span_frames: shortest visible interval of the target, in video frames;
    question_fraction: share of captions in the question form;
    distinct_colors: no distractor has the target's colour (colour alone singles the target out: an
    easier curriculum stage), instead of only no distractor with its colour and shape."""

    width: int = 64
    height: int = 64
    fps: float = 2.0
    num_frames: int = 16
    frames: int = 16
    max_distractors: int = 2
    min_span_frames: int = 4
    question_fraction: float = 0.5
    distinct_colors: bool = False

    def __post_init__(self):
        if self.width < 16 or self.height < 16:
            raise ValueError(f"frames must be at least 16x16 pixels, got {self.width}x{self.height}")
        if self.num_frames < 2 or self.fps <= 0:
            raise ValueError(f"need num_frames >= 2 and fps > 0, got {self.num_frames}, {self.fps}")
        if not 1 <= self.min_span_frames <= self.num_frames:
            raise ValueError(f"min_span_frames must be in [1, {self.num_frames}], got {self.min_span_frames}")
        if self.max_distractors < 0:
            raise ValueError(f"max_distractors must be >= 0, got {self.max_distractors}")


@dataclass
class Shape:
    """One drawn object: attributes, visible frames [first, last] (inclusive) and its top-left corner
    (pixels) at `first` and at `last` (linear motion in between)."""

    color: str
    shape: str
    size: str
    motion: str
    first: int
    last: int
    start_xy: tuple
    end_xy: tuple


def stamp(shape: str, side: int) -> np.ndarray:
    """Boolean [side, side] mask of a shape drawn in a side x side square; every row and column of the
    square holds at least one pixel, so the mask's tight box is the whole square."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    if shape == "square":
        mask = np.ones((side, side), dtype=bool)
    elif shape == "circle":
        c = (side - 1) / 2.0
        mask = (xx - c) ** 2 + (yy - c) ** 2 <= (side / 2.0) ** 2
    elif shape == "triangle":  # apex up: row y spans a width growing linearly to the full base
        c = (side - 1) / 2.0
        half = (yy + 1) / side * (side / 2.0)
        mask = np.abs(xx - c) <= half
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    return mask


def side_pixels(size: str, config: SyntheticConfig) -> int:
    return max(3, int(round(SIZES[size] * min(config.width, config.height))))


def box_at(obj: Shape, frame: int, config: SyntheticConfig) -> List[int]:
    """Pixel xyxy (exclusive end) of `obj` at video frame `frame` (inside [first, last])."""
    frac = 0.0 if obj.last == obj.first else (frame - obj.first) / (obj.last - obj.first)
    x0 = int(round(obj.start_xy[0] + frac * (obj.end_xy[0] - obj.start_xy[0])))
    y0 = int(round(obj.start_xy[1] + frac * (obj.end_xy[1] - obj.start_xy[1])))
    side = side_pixels(obj.size, config)
    return [x0, y0, x0 + side, y0 + side]


def _place(rng, size: str, motion: str, config: SyntheticConfig) -> tuple:
    side = side_pixels(size, config)
    dx, dy = MOTIONS[motion]
    travel_x = int(round(dx * MOTION_TRAVEL * config.width))
    travel_y = int(round(dy * MOTION_TRAVEL * config.height))
    lo_x, hi_x = max(0, -travel_x), config.width - side - max(0, travel_x)
    lo_y, hi_y = max(0, -travel_y), config.height - side - max(0, travel_y)
    x0, y0 = int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1))
    return (x0, y0), (x0 + travel_x, y0 + travel_y)


def _collide(a: Shape, b: Shape, config: SyntheticConfig) -> bool:
    for t in range(max(a.first, b.first), min(a.last, b.last) + 1):
        ax0, ay0, ax1, ay1 = box_at(a, t, config)
        bx0, by0, bx1, by1 = box_at(b, t, config)
        if ax0 < bx1 + MARGIN and bx0 < ax1 + MARGIN and ay0 < by1 + MARGIN and by0 < ay1 + MARGIN:
            return True
    return False


def _random_shape(rng, first: int, last: int, config: SyntheticConfig, motion: Optional[str] = None) -> Shape:
    size = str(rng.choice(list(SIZES)))
    motion = motion or str(rng.choice(list(MOTIONS)))
    start, end = _place(rng, size, motion, config)
    return Shape(str(rng.choice(list(COLORS))), str(rng.choice(SHAPES)), size, motion, first, last, start, end)


def make_scene(rng, config: SyntheticConfig, still: bool = False) -> List[Shape]:
    """A target (element 0) visible over a random interval and 1..max_distractors distractors visible
    in every frame (none with max_distractors 0), none overlapping any other, none with the target's
    colour and shape."""
    n = config.num_frames
    length = int(rng.integers(config.min_span_frames, n + 1))
    first = int(rng.integers(0, n - length + 1))
    target = _random_shape(rng, first, first + length - 1, config, "still" if still else None)
    scene = [target]
    if config.max_distractors == 0:
        return scene
    wanted = int(rng.integers(1, config.max_distractors + 1))
    for _ in range(50 * wanted):
        if len(scene) > wanted:
            break
        other = _random_shape(rng, 0, n - 1, config, "still" if still else None)
        if (other.color, other.shape) == (target.color, target.shape):
            continue
        if config.distinct_colors and other.color == target.color:
            continue
        if any(_collide(other, placed, config) for placed in scene):
            continue
        scene.append(other)
    if len(scene) < 2:
        raise RuntimeError("could not place a distractor; use larger frames")
    return scene


def caption(target: Shape, question: bool, with_motion: bool = True) -> str:
    """The description of the target: size, colour, shape and (for videos) motion."""
    noun = f"{target.size} {target.color} {target.shape}"
    if not with_motion:
        return f"the {noun}"
    if question:
        verb = "staying still" if target.motion == "still" else f"moving {target.motion}"
        return f"Which {noun} is {verb}?"
    verb = "stays still" if target.motion == "still" else f"moves {target.motion}"
    return f"The {noun} {verb}."


def render(scene: List[Shape], config: SyntheticConfig, rng, frames: Optional[List[int]] = None) -> np.ndarray:
    """Draw the scene: uint8 RGB [len(frames), H, W, 3] (all video frames by default). The target is
    drawn last."""
    frames = list(range(config.num_frames)) if frames is None else frames
    shape = (len(frames), config.height, config.width, 3)
    video = np.clip(BACKGROUND + rng.integers(-NOISE, NOISE + 1, size=shape), 0, 255).astype(np.uint8)
    for obj in scene[1:] + scene[:1]:
        mask = stamp(obj.shape, side_pixels(obj.size, config))
        for k, t in enumerate(frames):
            if obj.first <= t <= obj.last:
                x0, y0, x1, y1 = box_at(obj, t, config)
                video[k, y0:y1, x0:x1][mask] = COLORS[obj.color]
    return video


def _conversation(task: str, text: str, answer: str) -> list:
    return [{"from": "human", "value": "<image>\n" + instruction(task, text)}, {"from": "gpt", "value": answer}]


def make_stvg(index: int, seed: int, config: SyntheticConfig, split: str = "test"):
    """One STVG sample: (frames uint8 [num_frames, H, W, 3], Uni-STG record, scene). The record's video
    path is `videos/<id>.mp4`; its boxes cover every video frame of the span (t = frame / fps)."""
    rng = np.random.default_rng([seed, index, 0])
    scene = make_scene(rng, config)
    target = scene[0]
    question = bool(rng.random() < config.question_fraction)
    text = caption(target, question)
    fps = config.fps
    span = [target.first / fps, target.last / fps]
    sample = sample_frames(config.num_frames, fps, frames_upbound=config.frames)
    answer = format_span(*snap_span(span[0], span[1], sample.times))
    sid = f"synth-{split}-{seed}-{index:05d}"
    record = {
        "id": sid,
        "task": "stvg",
        "video": f"videos/{sid}.mp4",
        "conversations": _conversation("stvg", text, answer),
        "caption": text,
        "sentence_type": "interrogative" if question else "declarative",
        "span": span,
        "boxes": [{"t": t / fps, "xyxy": [float(v) for v in box_at(target, t, config)]} for t in range(target.first, target.last + 1)],
        "width": config.width,
        "height": config.height,
        "duration": config.num_frames / fps,
        "fps": fps,
    }
    return render(scene, config, rng), record, scene


def make_rec(index: int, seed: int, config: SyntheticConfig, split: str = "train"):
    """One REC sample: (image uint8 [H, W, 3], Uni-STG record with `image: images/<id>.png`, scene). The
    target is still and visible; one box at t = 0.0."""
    rng = np.random.default_rng([seed, index, 1])
    scene = make_scene(rng, config, still=True)
    target = scene[0]
    text = caption(target, question=False, with_motion=False)
    sid = f"synth-rec-{split}-{seed}-{index:05d}"
    record = {
        "id": sid,
        "task": "rec",
        "image": f"images/{sid}.png",
        "conversations": _conversation("rec", text, REC_ANSWER),
        "caption": text,
        "boxes": [{"t": 0.0, "xyxy": [float(v) for v in box_at(target, target.first, config)]}],
        "width": config.width,
        "height": config.height,
    }
    return render(scene, config, rng, [target.first])[0], record, scene


def write_split(out_dir, num: int, seed: int, config: SyntheticConfig, split: str, task: str = "stvg", progress: bool = True) -> List[dict]:
    """Write `num` samples (mp4 videos or png images + `<split>.json`, a JSON list of records) under
    `out_dir`. A split already written with the same arguments is read back instead of regenerated."""
    from tqdm import tqdm

    from .video import write_video

    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    out = Path(out_dir)
    index_path = out / f"{split}.json"
    manifest_path = out / f"{split}.manifest.json"
    manifest = {"num": num, "seed": seed, "task": task, "config": asdict(config)}
    if index_path.is_file() and manifest_path.is_file() and json.loads(manifest_path.read_text()) == manifest:
        records = json.loads(index_path.read_text())
        if all((out / (r.get("video") or r["image"])).is_file() for r in records):
            log.info("reusing %d %s samples in %s", len(records), split, out)
            return records
    records = []
    for i in tqdm(range(num), desc=f"synthetic {task} {split}", disable=not progress):
        if task == "stvg":
            frames, record, _ = make_stvg(i, seed, config, split)
            write_video(out / record["video"], frames, config.fps)
        else:
            import cv2

            image, record, _ = make_rec(i, seed, config, split)
            (out / "images").mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(out / record["image"]), np.ascontiguousarray(image[..., ::-1])):
                raise RuntimeError(f"opencv cannot write {out / record['image']}")
        records.append(record)
    out.mkdir(parents=True, exist_ok=True)
    tmp = index_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=1))
    os.replace(tmp, index_path)
    manifest_path.write_text(json.dumps(manifest))
    return records
