"""HCSTVG-v1 / HCSTVG-v2 (official JSON) -> Uni-STG stvg records.

Source format: one JSON object keyed by video file name,
    v1: {"55_vfjywN5CN0Y.mp4": {"bbox": [[x, y, w, h], ...], "st_time": 8.91, "ed_time": 17.54,
         "img_num": 600, "caption": "...", "width": 640, "height": 360, "st_frame": 268}}
    v2: the same with "English" instead of "caption" and "img_size": [h, w] instead of width/height.
`bbox` holds one pixel box per frame of the tube, `img_num` is the clip's frame count, `st_frame` the
tube's first frame (1-based), st_time/ed_time its times in seconds (not used).

Every clip lasts 20 s, so fps = img_num / 20. `st_frame` is 1-based and there is one box per frame from it,
so the tube covers 0-based frames first = st_frame-1 ... last = first+len(bbox)-1 inclusive. As TubeDETR
does, the span comes from those frames (not st_time/ed_time), by the time contract of core.timespan:
span = frames_to_span(first, last, fps) = [first/fps, last/fps] seconds, each box of frame f has
t = f/fps. Frames past the clip (f >= img_num, t >= 20 s) are cut off, and boxes are clipped to the frame
(a box with nothing left is dropped, the sample kept). A tube of one frame has start == end.

TubeDETR's preprocessing (antoyang/TubeDETR preproc/preproc_hcstvg.py) uses st_frame itself as a 0-based
frame index, one frame later than this converter's 1-based reading; scores of a record against itself are
unaffected, only which frames TubeDETR's 5-fps grid picks.

Bad entries (wrong types, NaN/inf, a non-integral st_frame, negative box sizes, ...) are reported through
`drops` by field and video name, and the other entries converted.
"""

import random
from typing import Iterator, Optional

from ...core.timespan import frame_time
from .common import (
    ENTRY_ERRORS,
    BadEntry,
    Drops,
    closed_span,
    frame_number,
    grounding_record,
    iter_progress,
    load_json,
    mapping,
    need,
    number,
    sequence,
    text,
    xywh_box,
    xywh_to_xyxy_clipped,
)

CLIP_SECONDS = 20.0


def convert_hcstvg(
    ann: str, version: int = 1, seed: int = 0, video_prefix: str = "", drops: Optional[Drops] = None
) -> Iterator[dict]:
    """Yield stvg records from an HCSTVG-v`version` annotation file (test.json, trainv2.json, ...)."""
    if version not in (1, 2):
        raise ValueError(f"HCSTVG version must be 1 or 2, got {version!r}")
    drops = Drops() if drops is None else drops
    rng = random.Random(seed)
    data = load_json(ann, dict, "an object keyed by video file name")
    for name, item in iter_progress(data.items(), f"hcstvg-v{version}", total=len(data)):
        try:
            record = _convert_one(name, item, version, rng, video_prefix, drops)
        except ENTRY_ERRORS as e:
            drops.error(e, name)
            continue
        if record is not None:
            yield record


def _convert_one(name: str, item, version: int, rng, video_prefix: str, drops: Drops) -> Optional[dict]:
    item = mapping(item, "entry")
    if version == 1:
        caption = text(need(item, "caption"), "caption")
        width = number(need(item, "width"), "width", positive=True)
        height = number(need(item, "height"), "height", positive=True)
    else:
        caption = text(need(item, "English"), "English")
        size = need(item, "img_size")
        if not isinstance(size, list) or len(size) != 2:
            raise BadEntry("img_size", "not [height, width]", size)
        height, width = (number(v, "img_size", positive=True) for v in size)
    img_num = frame_number(need(item, "img_num"), "img_num", low=1)
    fps = img_num / CLIP_SECONDS
    first = frame_number(need(item, "st_frame"), "st_frame", low=1) - 1  # 1-based -> 0-based
    bbox = sequence(need(item, "bbox"), "bbox")
    if not bbox:
        raise BadEntry("bbox", "empty (no frame in the tube)")
    xywhs = [xywh_box(xywh, "bbox", where=f"bbox[{k}]") for k, xywh in enumerate(bbox)]
    last = min(first + len(xywhs) - 1, img_num - 1)  # the last frame inside the 20-s clip
    boxes = []
    for k, xywh in enumerate(xywhs):
        xyxy = xywh_to_xyxy_clipped(xywh, width, height)
        if xyxy is None or first + k > last:
            drops["box outside the frame or the clip (dropped, sample kept)"] += 1
            continue
        boxes.append({"t": frame_time(first + k, fps), "xyxy": xyxy})
    if not boxes:
        drops.note("no box inside the frame and the clip", name)
        return None
    span = closed_span(first, last, fps, "bbox")
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
