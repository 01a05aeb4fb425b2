"""VidSTG -> Uni-STG stvg records, from the original annotations or TubeDETR's preprocessed form.

Original (`Guaranteer/VidSTG-Dataset`, annotations/{train,val,test}_annotations.json): a list of
    {"vid", "fps", "frame_count", "width", "height", "used_segment": {"begin_fid", "end_fid"},
     "temporal_gt": {"begin_fid", "end_fid"}, "subject/objects": [{"tid", "category"}],
     "captions": [{"description", "type", "target_id"}], "questions": [...]}
with boxes in VidOR's per-video JSON (`{"video_id", "video_path", "trajectories": [[{"tid", "bbox":
{"xmin", "ymin", "xmax", "ymax"}, ...}, ...] per frame]}`), found by video id anywhere under `vidor_dir`.
TubeDETR form: {"videos": [{original_video_id, frame_count, fps, width, height, start_frame, end_frame,
tube_start_frame, tube_end_frame, video_path, caption, type, target_id, video_id, qtype}],
"trajectories": {vid: {tid: {frame: {"bbox": [x, y, w, h], ...}}}}}.

Frame ids are 0-based frames of the whole VidOR video and end_fid is exclusive (TubeDETR checks
end_fid - 1 against the trajectory). Times are seconds of the whole video: span = [begin_fid/fps,
end_fid/fps], each box t = frame/fps, and `clip` = the used segment [begin_fid/fps, end_fid/fps]
(the part of the video VidSTG evaluates on). Declarative sentences come from "captions", interrogative
ones from "questions"; `sentence_type` says which (results are reported per type).
"""

import functools
import json
import os
import random
from typing import Dict, Iterator, Optional

from .common import Drops, clip_span, clip_xyxy, frame_time, grounding_record, iter_progress, xywh_to_xyxy_clipped

SENTENCE_KEYS = (("captions", "declarative"), ("questions", "interrogative"))


def index_vidor(vidor_dir: str) -> Dict[str, str]:
    """Map VidOR video id -> path of its per-video annotation JSON under `vidor_dir` (any depth)."""
    index = {}
    for root, _, files in os.walk(vidor_dir):
        for name in files:
            if name.endswith(".json"):
                index[name[: -len(".json")]] = os.path.join(root, name)
    return index


def convert_vidstg(
    ann: str, vidor_dir: str, seed: int = 0, video_prefix: str = "", drops: Optional[Drops] = None
) -> Iterator[dict]:
    """Yield stvg records (one per sentence) from an original VidSTG annotation file + VidOR annotations."""
    drops = Drops() if drops is None else drops
    rng = random.Random(seed)
    index = index_vidor(vidor_dir)
    load_vidor = functools.lru_cache(maxsize=16)(_load_json)
    with open(ann, "r", encoding="utf-8") as f:
        items = json.load(f)
    for i, item in enumerate(iter_progress(items, "vidstg", total=len(items))):
        vid = str(item.get("vid")) if isinstance(item, dict) else "?"
        if vid not in index:
            drops.note("no VidOR annotation for the video", f"vidstg[{i}] vid={vid}")
            continue
        try:
            vidor = load_vidor(index[vid])
            trajectories = {}
            for frame, boxes in enumerate(vidor["trajectories"]):
                for b in boxes:
                    bb = b["bbox"]
                    trajectories.setdefault(b["tid"], {})[frame] = [bb["xmin"], bb["ymin"], bb["xmax"], bb["ymax"]]
            records = list(
                _sentences(f"vidstg_{i}_{vid}", item, vidor["video_path"], trajectories, rng, video_prefix, drops)
            )
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            drops.note(f"bad source field: {type(e).__name__}: {e}", f"vidstg[{i}] vid={vid}")
            continue
        yield from records


def _sentences(base_id, item, video_path, trajectories, rng, video_prefix, drops) -> Iterator[dict]:
    fps, width, height = item["fps"], item["width"], item["height"]
    duration = item["frame_count"] / fps
    seg, gt = item["used_segment"], item["temporal_gt"]
    clip = clip_span(seg["begin_fid"] / fps, seg["end_fid"] / fps, duration)
    span = clip_span(gt["begin_fid"] / fps, gt["end_fid"] / fps, duration)
    for key, sentence_type in SENTENCE_KEYS:
        for k, sentence in enumerate(item.get(key, [])):
            rid = f"{base_id}_{sentence_type[0]}{k}"
            trajectory = trajectories.get(sentence["target_id"], {})
            boxes = []
            for frame in range(gt["begin_fid"], gt["end_fid"]):
                xyxy = clip_xyxy(trajectory[frame], width, height) if frame in trajectory else None
                if xyxy is not None:
                    boxes.append({"t": frame_time(frame, fps), "xyxy": xyxy})
            if span is None or clip is None or not boxes:
                drops.note("empty span or no box of the target inside it", rid)
                continue
            yield grounding_record(
                rid,
                "stvg",
                video_prefix + video_path,
                sentence["description"],
                rng,
                span=span,
                boxes=boxes,
                width=width,
                height=height,
                duration=duration,
                fps=fps,
                clip=[round(c, 4) for c in clip],
                sentence_type=sentence_type,
                source="vidstg",
            )


def convert_vidstg_tubedetr(
    ann: str, seed: int = 0, video_prefix: str = "", drops: Optional[Drops] = None
) -> Iterator[dict]:
    """Yield stvg records from TubeDETR's preprocessed VidSTG file ({train,val,test}.json)."""
    drops = Drops() if drops is None else drops
    rng = random.Random(seed)
    data = _load_json(ann)
    trajectories = data["trajectories"]
    for v in iter_progress(data["videos"], "vidstg-tubedetr", total=len(data["videos"])):
        rid = f"vidstg_{v.get('video_id', '?')}"
        try:
            record = _tubedetr_one(rid, v, trajectories, rng, video_prefix)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            drops.note(f"bad source field: {type(e).__name__}: {e}", rid)
            continue
        if record is None:
            drops.note("empty span or no box of the target inside it", rid)
            continue
        yield record


def _tubedetr_one(rid, v, trajectories, rng, video_prefix) -> Optional[dict]:
    fps, width, height = v["fps"], v["width"], v["height"]
    duration = v["frame_count"] / fps
    trajectory = trajectories[str(v["original_video_id"])][str(v["target_id"])]
    boxes = []
    for frame in range(v["tube_start_frame"], v["tube_end_frame"]):
        entry = trajectory.get(str(frame))
        xyxy = xywh_to_xyxy_clipped(entry["bbox"], width, height) if entry else None
        if xyxy is not None:
            boxes.append({"t": frame_time(frame, fps), "xyxy": xyxy})
    span = clip_span(v["tube_start_frame"] / fps, v["tube_end_frame"] / fps, duration)
    clip = clip_span(v["start_frame"] / fps, v["end_frame"] / fps, duration)
    if span is None or clip is None or not boxes:
        return None
    return grounding_record(
        rid,
        "stvg",
        video_prefix + v["video_path"],
        v["caption"],
        rng,
        span=span,
        boxes=boxes,
        width=width,
        height=height,
        duration=duration,
        fps=fps,
        clip=[round(c, 4) for c in clip],
        sentence_type=v["qtype"],
        source="vidstg",
    )


def _load_json(path: str):
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)
