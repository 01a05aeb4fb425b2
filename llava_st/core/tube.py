"""Tube assembly (paper §3.1.5) and export: the tube contract.

A tube is a dict:
    {"query", "span": [t_s, t_e] (seconds) or None, "frames": [{"t": sec, "box_xyxy": [x0, y0, x1, y1]
     (pixels of the original video), "box_norm": [x0, y0, x1, y1] (normalised xyxy)}],
     "video": {"path", "width", "height", "duration", "fps"}, "raw_text", "status"}
`status` is "ok" or why the span could not be used; assembly never raises on a bad answer.
"""

import csv
import io
import json
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from .boxes import ImageFrame, cxcywh_to_xyxy, denormalize_xyxy, normalize_xyxy, xyxy_to_cxcywh
from .boxtext import parse_boxes_text
from .timespan import parse_span, snap_span, span_frame_mask


def assemble_tube(
    query: str,
    raw_text: str,
    frame_times: Sequence[float],
    boxes_cxcywh: Optional[torch.Tensor],
    video: dict,
    span: Optional[Sequence[float]] = None,
    frame: Optional[ImageFrame] = None,
) -> dict:
    """Build a tube from the generated answer and the decoder's boxes.

    frame_times: [F] seconds of the sampled frames. boxes_cxcywh: [F, 4] normalised cxcywh, one per
    sampled frame (None for a model without a decoder), of the frame the model saw: `frame` says where
    the original lies in it (an image under upstream's "pad"); default: the whole original. video:
    {"path", "width", "height", "duration", "fps"} of the original video (pixels, seconds). span: an
    already known span in seconds, used as it is; otherwise it is parsed from `raw_text`, and the
    tube's frames are the sampled frames inside that span snapped to them (core.timespan.snap_span), as
    training marked the frames of the snapped span it wrote the answer from: the answer rounds times to
    0.1 s, so the frames are exactly the taught ones whenever sampled frames lie more than 0.1 s apart.
    The tube's span is the parsed one. `box_norm` in the tube is normalised to the original.
    """
    tube = {"query": query, "span": None, "frames": [], "video": dict(video), "raw_text": raw_text, "status": "ok"}
    parsed_from_text = span is None
    if span is None:
        parsed = parse_span(raw_text, duration=video.get("duration"))
        if not parsed.ok:
            tube["status"] = parsed.status
            return tube
        span = parsed.span
    start, end = float(span[0]), float(span[1])
    tube["span"] = [start, end]
    if parsed_from_text and len(frame_times):
        start, end = snap_span(start, end, frame_times)
    if boxes_cxcywh is None:
        return tube
    if boxes_cxcywh.shape[0] != len(frame_times):
        raise ValueError(f"{boxes_cxcywh.shape[0]} boxes for {len(frame_times)} frames")
    inside = span_frame_mask(start, end, frame_times)
    if not inside.any():
        tube["status"] = f"span [{start:.2f}, {end:.2f}]s contains no sampled frame"
        return tube
    norm = cxcywh_to_xyxy(boxes_cxcywh.detach().float().cpu()).clamp(0.0, 1.0)  # [F, 4]
    if frame is None:
        pixels = denormalize_xyxy(norm, video["width"], video["height"])
    else:
        pixels = frame.to_pixels(norm)
        norm = normalize_xyxy(pixels, video["width"], video["height"])
    for i in inside.nonzero()[0].tolist():
        tube["frames"].append(
            {
                "t": float(frame_times[i]),
                "box_xyxy": [round(v, 2) for v in pixels[i].tolist()],
                "box_norm": [round(v, 5) for v in norm[i].tolist()],
            }
        )
    return tube


def text_tube(query: str, raw_text: str, frame_times: Sequence[float], video: dict, span=None,
              frame: Optional[ImageFrame] = None) -> dict:
    """Tube of the boxes-as-text ablation (query_mode "none"): the span and boxes parsed from the answer
    (core.boxtext), each sampled frame (times in seconds) taking the parsed box nearest in time; `frame`
    as in assemble_tube."""
    _, parsed = parse_boxes_text(raw_text)
    if not parsed:
        return assemble_tube(query, raw_text, frame_times, None, video, span=span)
    times = np.array(sorted(parsed))
    nearest = [float(times[np.abs(times - t).argmin()]) for t in frame_times]
    boxes = xyxy_to_cxcywh(torch.tensor([parsed[t] for t in nearest], dtype=torch.float32))
    return assemble_tube(query, raw_text, frame_times, boxes, video, span=span, frame=frame)


def tubes_to_json(tubes: Iterable[dict]) -> str:
    return json.dumps(list(tubes), indent=2)


def tubes_to_csv(tubes: Iterable[dict], query_ids: Optional[Sequence[str]] = None) -> str:
    """CSV with header `query_id,time_ms,x0,y0,x1,y1` (milliseconds, pixels); one row per tube frame.
    query_ids default to the tube's position in the list."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["query_id", "time_ms", "x0", "y0", "x1", "y1"])
    for n, tube in enumerate(tubes):
        qid = query_ids[n] if query_ids is not None else str(n)
        for frame in tube["frames"]:
            writer.writerow([qid, int(round(frame["t"] * 1000))] + [f"{v:.2f}" for v in frame["box_xyxy"]])
    return buf.getvalue()
