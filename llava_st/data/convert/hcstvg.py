"""HCSTVG-v1 / HCSTVG-v2 (official JSON) -> Uni-STG stvg records.

Source format (one dict keyed by video file name, see ../shared/DATA-NOTES.md):
    v1: {"55_vfjywN5CN0Y.mp4": {"bbox": [[x, y, w, h], ...], "st_time": 8.91, "ed_time": 17.54,
         "img_num": 600, "caption": "...", "width": 640, "height": 360, "st_frame": 268}}
    v2: the same with "English" instead of "caption" and "img_size": [h, w] instead of width/height.
Every clip lasts 20 s, so fps = img_num / 20. `st_frame` is 1-based and there is one box per frame from
it, so the tube covers 0-based frames st_frame-1 ... st_frame-2+len(bbox) inclusive. As TubeDETR does, the
span comes from those frames (not st_time/ed_time): [(st_frame-1)/fps, (st_frame-1+len(bbox))/fps] seconds,
a frame covering [f/fps, (f+1)/fps); each box has t = f/fps. Boxes are clipped to the frame.
"""

import json
import random
from typing import Iterator, Optional

from .common import Drops, clip_span, frame_time, grounding_record, iter_progress, xywh_to_xyxy_clipped

CLIP_SECONDS = 20.0


def convert_hcstvg(
    ann: str, version: int = 1, seed: int = 0, video_prefix: str = "", drops: Optional[Drops] = None
) -> Iterator[dict]:
    """Yield stvg records from an HCSTVG-v`version` annotation file (test.json, trainv2.json, ...)."""
    if version not in (1, 2):
        raise ValueError(f"HCSTVG version must be 1 or 2, got {version!r}")
    drops = Drops() if drops is None else drops
    rng = random.Random(seed)
    with open(ann, "r", encoding="utf-8") as f:
        data = json.load(f)
    for name, item in iter_progress(data.items(), f"hcstvg-v{version}", total=len(data)):
        try:
            record = _convert_one(name, item, version, rng, video_prefix, drops)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            drops.note(f"bad source field: {type(e).__name__}: {e}", name)
            continue
        if record is not None:
            yield record


def _convert_one(name: str, item: dict, version: int, rng, video_prefix: str, drops: Drops) -> Optional[dict]:
    if version == 1:
        caption, width, height = item["caption"], item["width"], item["height"]
    else:
        caption, (height, width) = item["English"], item["img_size"]
    fps = item["img_num"] / CLIP_SECONDS
    first = int(item["st_frame"]) - 1  # 1-based -> 0-based
    boxes = []
    for k, xywh in enumerate(item["bbox"]):
        xyxy = xywh_to_xyxy_clipped(xywh, width, height)
        t = frame_time(first + k, fps)
        if xyxy is None or t >= CLIP_SECONDS:
            drops["box outside the frame or the clip (dropped, sample kept)"] += 1
            continue
        boxes.append({"t": t, "xyxy": xyxy})
    span = clip_span(first / fps, (first + len(item["bbox"])) / fps, CLIP_SECONDS)
    if not boxes or span is None:
        drops.note("no box inside the frame and the clip", name)
        return None
    stem = name.rsplit(".", 1)[0]
    return grounding_record(
        f"hcstvg-v{version}_{stem}",
        "stvg",
        video_prefix + name,
        caption,
        rng,
        span=span,
        boxes=boxes,
        width=width,
        height=height,
        duration=CLIP_SECONDS,
        fps=round(fps, 4),
        source=f"hcstvg-v{version}",
    )
