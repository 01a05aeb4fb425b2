"""VidSTG -> Uni-STG stvg records, from the original annotations or TubeDETR's preprocessed form.

Original (`Guaranteer/VidSTG-Dataset`, annotations/{train,val,test}_annotations.json): a list of
    {"vid", "fps", "frame_count", "width", "height", "used_segment": {"begin_fid", "end_fid"},
     "temporal_gt": {"begin_fid", "end_fid"}, "subject/objects": [{"tid", "category"}],
     "captions": [{"description", "type", "target_id"}], "questions": [...]}
with boxes in VidOR's per-video JSON (`{"video_id", "video_path", "trajectories": [[{"tid", "bbox":
{"xmin", "ymin", "xmax", "ymax"}, ...}, ...] per frame]}`). VidOR's official layout is
`annotation/<split>/<group>/<video_id>.json`; as TubeDETR does, a video's file is found by the `video_id`
inside each JSON file anywhere under `vidor_dir` (the file name only for a file without a `video_id`).
TubeDETR form: {"videos": [{original_video_id, frame_count, fps, width, height, start_frame, end_frame,
tube_start_frame, tube_end_frame, video_path, caption, type, target_id, video_id, qtype}],
"trajectories": {vid: {tid: {frame: {"bbox": [x, y, w, h], ...}}}}}.

Frame ids are 0-based frames of the whole VidOR video and end_fid / end_frame / tube_end_frame are
exclusive (TubeDETR checks end_fid - 1 against the trajectory), with 0 <= begin < end <= frame_count.
Times are seconds of the whole video, by the time contract of core.timespan (closed spans): span =
frames_to_span(begin_fid, end_fid - 1, fps), each box of frame f has t = f/fps (one box per annotated
frame in range(begin_fid, end_fid)), and `clip` = the used segment frames_to_span(begin_fid, end_fid - 1,
fps) (the part of the video VidSTG evaluates on). A one-frame tube has a zero-length span, which the schema
refuses: it is dropped. Declarative sentences come from "captions", interrogative ones from "questions";
`sentence_type` says which (results are reported per type).

Bad entries (wrong types, NaN/inf, non-integral frames, a frame range beyond frame_count, ...) are reported
through `drops` by field and entry, and the other entries converted; a sentence's own bad fields drop only
that sentence.
"""

import functools
import json
import os
import random
import re
from typing import Dict, Iterator, Optional

from ...core.timespan import frame_time, frames_to_span
from .common import (
    ENTRY_ERRORS,
    BadEntry,
    ConvertInputError,
    Drops,
    clip_xyxy,
    closed_span,
    duration_of,
    frame_number,
    frame_range,
    grounding_record,
    iter_progress,
    key_id,
    load_json,
    mapping,
    need,
    number,
    sequence,
    short,
    text,
    xywh_box,
    xywh_to_xyxy_clipped,
)

SENTENCE_KEYS = (("captions", "declarative"), ("questions", "interrogative"))
_HEAD_BYTES = 1 << 16
_NO_ID = object()


def index_vidor(vidor_dir: str) -> Dict[str, str]:
    """Map VidOR video id -> path of its per-video annotation JSON under `vidor_dir` (any depth).

    The id is the file's top-level `video_id` (TubeDETR's key), else the file name without `.json`; the
    first file in sorted path order wins a duplicate id."""
    by_id, by_stem = {}, {}
    for root, dirs, files in os.walk(vidor_dir):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            path = os.path.join(root, name)
            vid = read_video_id(path)
            if vid is _NO_ID:
                by_stem.setdefault(name[: -len(".json")], path)
            else:
                by_id.setdefault(vid, path)
    return {**{k: v for k, v in by_stem.items() if k not in by_id}, **by_id}


def read_video_id(path: str):
    """The top-level "video_id" of a VidOR JSON file as a string (read from the file's head when it is
    there, as in VidOR's files, else from the whole file), or _NO_ID when it has none or is unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
            whole = len(head) < _HEAD_BYTES
            found = _top_level_value(head.decode("utf-8", "replace"), "video_id", whole)
            if found is None:  # not decided by the head: parse the whole file
                data = json.loads(head + f.read())
                found = (data["video_id"],) if isinstance(data, dict) and "video_id" in data else ()
    except (OSError, ValueError, RecursionError):
        return _NO_ID
    if not found or isinstance(found[0], bool) or not isinstance(found[0], (str, int)):
        return _NO_ID
    return str(found[0])


_WS = re.compile(r"\s*")


def _top_level_value(text: str, key: str, whole: bool) -> Optional[tuple]:
    """(value,) of `key` in the JSON object `text` starts, () when the object has no such key, None when
    `text` (the head of a longer file unless `whole`) ends before that is known or is not such an object."""
    decoder = json.JSONDecoder()
    try:
        i = _WS.match(text, 0).end()
        if text[i : i + 1] != "{":
            return None if not whole else ()
        i += 1
        while True:
            i = _WS.match(text, i).end()
            if text[i : i + 1] == "}":
                return ()
            name, i = decoder.raw_decode(text, i)
            i = _WS.match(text, i).end()
            if text[i : i + 1] != ":":
                return None
            value, i = decoder.raw_decode(text, _WS.match(text, i + 1).end())
            if name == key:
                return (value,) if whole or i < len(text) else None
            i = _WS.match(text, i).end()
            if text[i : i + 1] != ",":
                return () if text[i : i + 1] == "}" else None
            i += 1
    except (ValueError, IndexError):
        return None


def convert_vidstg(
    ann: str, vidor_dir: str, seed: int = 0, video_prefix: str = "", drops: Optional[Drops] = None
) -> Iterator[dict]:
    """Yield stvg records (one per sentence) from an original VidSTG annotation file + VidOR annotations."""
    drops = Drops() if drops is None else drops
    rng = random.Random(seed)
    if not os.path.isdir(vidor_dir):
        raise ConvertInputError(f"{vidor_dir}: not a directory (the VidOR per-video annotations)")
    items = load_json(ann, list, "an array of VidSTG entries")
    index = index_vidor(vidor_dir)
    load_vidor = functools.lru_cache(maxsize=16)(_load_vidor)
    for i, item in enumerate(iter_progress(items, "vidstg", total=len(items))):
        where = f"vidstg[{i}]"
        try:
            item = mapping(item, "entry")
            vid = str(key_id(need(item, "vid"), "vid"))
            where = f"vidstg[{i}] vid={vid}"
            if vid not in index:
                drops.note(f"no VidOR annotation for the video under {vidor_dir}", where)
                continue
            video_path, trajectories, bad_tids = load_vidor(index[vid])
            entry = _entry(item)
        except ENTRY_ERRORS as e:
            drops.error(e, where)
            continue
        yield from _sentences(f"vidstg_{i}_{vid}", item, entry, video_path, trajectories, bad_tids, rng, video_prefix, drops)


def _load_vidor(path: str):
    """(video_path, {tid: {frame: xyxy}}, {tid: BadEntry of one of its boxes}) of a VidOR annotation file;
    a file that is unreadable or not VidOR's structure raises BadEntry naming it."""
    try:
        data = load_json(path, dict, "a VidOR annotation object")
    except ConvertInputError as e:
        raise BadEntry("VidOR annotation", "unreadable file", where=str(e)) from None
    try:
        return _vidor_tracks(path, data)
    except BadEntry as e:
        raise BadEntry(e.field, e.problem, where=f"{path}: {e.detail}" if e.detail else path) from None


def _vidor_tracks(path: str, data: dict):
    video_path = text(need(data, "video_path", "VidOR video_path"), "VidOR video_path")
    trajectories, bad_tids = {}, {}
    for frame, boxes in enumerate(sequence(need(data, "trajectories", "VidOR trajectories"), "VidOR trajectories")):
        for b in sequence(boxes, "VidOR trajectories"):
            b = mapping(b, "VidOR trajectories box")
            tid = key_id(need(b, "tid", "VidOR box tid"), "VidOR box tid")
            try:
                bb = mapping(need(b, "bbox", "VidOR box bbox"), "VidOR box bbox")
                xyxy = [float(number(need(bb, k, "VidOR box bbox"), "VidOR box bbox")) for k in ("xmin", "ymin", "xmax", "ymax")]
                if xyxy[2] < xyxy[0] or xyxy[3] < xyxy[1]:
                    raise BadEntry("VidOR box bbox", "negative width or height", bb)
            except BadEntry as e:
                where = f"{path} frame {frame} tid {tid}" + (f": {e.detail}" if e.detail else "")
                bad_tids.setdefault(tid, BadEntry(e.field, e.problem, where=where))
                continue
            trajectories.setdefault(tid, {})[frame] = xyxy
    return video_path, trajectories, bad_tids


def _entry(item: dict) -> dict:
    """The checked video fields of a VidSTG entry: fps, width, height, frame_count, span, clip, tube frames."""
    fps = number(need(item, "fps"), "fps", positive=True)
    width = number(need(item, "width"), "width", positive=True)
    height = number(need(item, "height"), "height", positive=True)
    frame_count = frame_number(need(item, "frame_count"), "frame_count", low=1)
    seg = mapping(need(item, "used_segment"), "used_segment")
    gt = mapping(need(item, "temporal_gt"), "temporal_gt")
    seg_b, seg_e = frame_range(need(seg, "begin_fid", "used_segment.begin_fid"), need(seg, "end_fid", "used_segment.end_fid"),
                               frame_count, "used_segment", "begin_fid", "end_fid")
    gt_b, gt_e = frame_range(need(gt, "begin_fid", "temporal_gt.begin_fid"), need(gt, "end_fid", "temporal_gt.end_fid"),
                             frame_count, "temporal_gt", "begin_fid", "end_fid")
    return _checked_tube(fps, width, height, frame_count, (seg_b, seg_e), (gt_b, gt_e), "temporal_gt", "used_segment")


def _checked_tube(fps, width, height, frame_count, seg, gt, gt_name, seg_name) -> dict:
    if not seg[0] <= gt[0] < gt[1] <= seg[1]:
        raise BadEntry(gt_name, f"not inside {seg_name}", list(gt), f"{seg_name} {list(seg)}")
    return {
        "fps": fps,
        "width": width,
        "height": height,
        "duration": duration_of(frame_count, fps),
        "frames": gt,
        "span": closed_span(gt[0], gt[1] - 1, fps, gt_name),
        "clip": list(frames_to_span(seg[0], seg[1] - 1, fps)),
    }


def _sentences(base_id, item, entry, video_path, trajectories, bad_tids, rng, video_prefix, drops) -> Iterator[dict]:
    begin, end = entry["frames"]
    if not any(item.get(key) for key, _ in SENTENCE_KEYS):  # nothing to convert: said, not lost silently
        drops.note("no sentence: captions and questions empty or missing", base_id)
        return
    for key, sentence_type in SENTENCE_KEYS:
        sentences = item.get(key, [])
        if not isinstance(sentences, list):
            drops.note(f"bad {key}: not a JSON array", base_id)
            continue
        for k, sentence in enumerate(sentences):
            rid = f"{base_id}_{sentence_type[0]}{k}"
            try:
                sentence = mapping(sentence, f"{key} entry")
                target = key_id(need(sentence, "target_id", f"{key}.target_id"), f"{key}.target_id")
                description = text(need(sentence, "description", f"{key}.description"), f"{key}.description")
                if target in bad_tids:
                    raise bad_tids[target]
                trajectory = trajectories.get(target, {})
                boxes = []
                for frame in sorted(f for f in trajectory if begin <= f < end):  # the annotated frames only
                    xyxy = clip_xyxy(trajectory[frame], entry["width"], entry["height"])
                    if xyxy is not None:
                        boxes.append({"t": frame_time(frame, entry["fps"]), "xyxy": xyxy})
                if not boxes:
                    drops.note("no box of the target inside the span", rid)
                    continue
                record = _record(rid, entry, video_prefix, video_path, description, rng, boxes, sentence_type)
            except ENTRY_ERRORS as e:
                drops.error(e, rid)
                continue
            yield record


def _record(rid, entry, video_prefix, video_path, caption, rng, boxes, sentence_type) -> dict:
    return grounding_record(
        rid,
        "stvg",
        video_prefix + video_path,
        caption,
        rng,
        span=entry["span"],
        boxes=boxes,
        width=entry["width"],
        height=entry["height"],
        duration=entry["duration"],
        fps=entry["fps"],
        clip=entry["clip"],
        sentence_type=sentence_type,
        source="vidstg",
    )


def convert_vidstg_tubedetr(
    ann: str, seed: int = 0, video_prefix: str = "", drops: Optional[Drops] = None
) -> Iterator[dict]:
    """Yield stvg records from TubeDETR's preprocessed VidSTG file ({train,val,test}.json)."""
    drops = Drops() if drops is None else drops
    rng = random.Random(seed)
    data = load_json(ann, dict, 'an object with "videos" and "trajectories"')
    videos, trajectories = data.get("videos"), data.get("trajectories")
    if not isinstance(videos, list) or not isinstance(trajectories, dict):
        raise ConvertInputError(f'{ann}: expected "videos" (an array) and "trajectories" (an object) at the top level')
    for i, v in enumerate(iter_progress(videos, "vidstg-tubedetr", total=len(videos))):
        rid = f"vidstg-tubedetr[{i}]"
        try:
            v = mapping(v, "entry")
            rid = f"vidstg_{key_id(need(v, 'video_id'), 'video_id')}"
            record = _tubedetr_one(rid, v, trajectories, rng, video_prefix)
        except ENTRY_ERRORS as e:
            drops.error(e, rid)
            continue
        if record is None:
            drops.note("no box of the target inside the span", rid)
            continue
        yield record


def _tubedetr_one(rid, v, trajectories, rng, video_prefix) -> Optional[dict]:
    fps = number(need(v, "fps"), "fps", positive=True)
    width = number(need(v, "width"), "width", positive=True)
    height = number(need(v, "height"), "height", positive=True)
    frame_count = frame_number(need(v, "frame_count"), "frame_count", low=1)
    seg = frame_range(need(v, "start_frame"), need(v, "end_frame"), frame_count, "segment", "start_frame", "end_frame")
    gt = frame_range(need(v, "tube_start_frame"), need(v, "tube_end_frame"), frame_count, "tube", "tube_start_frame",
                     "tube_end_frame")
    entry = _checked_tube(fps, width, height, frame_count, seg, gt, "tube", "segment (start_frame, end_frame)")
    caption = text(need(v, "caption"), "caption")
    video_path = text(need(v, "video_path"), "video_path")
    qtype = text(need(v, "qtype"), "qtype")
    ovid = str(key_id(need(v, "original_video_id"), "original_video_id"))
    target = str(key_id(need(v, "target_id"), "target_id"))
    video_tracks = trajectories.get(ovid)
    if not isinstance(video_tracks, dict) or not isinstance(video_tracks.get(target), dict):
        raise BadEntry("target_id", "no trajectory of the target in trajectories", where=f"video {short(ovid)} target {target}")
    trajectory = video_tracks[target]
    frames = {}
    for key, box in trajectory.items():
        if not (key.isascii() and key.isdigit()):
            raise BadEntry("trajectories", "a frame key that is not a frame number", key, f"video {ovid} target {target}")
        frames[int(key)] = box
    boxes = []
    for frame in sorted(f for f in frames if gt[0] <= f < gt[1]):  # the annotated frames only
        box = mapping(frames[frame], "trajectories frame")
        xywh = xywh_box(need(box, "bbox", "trajectories bbox"), "trajectories bbox", f"video {ovid} target {target} frame {frame}")
        xyxy = xywh_to_xyxy_clipped(xywh, width, height)
        if xyxy is not None:
            boxes.append({"t": frame_time(frame, fps), "xyxy": xyxy})
    if not boxes:
        return None
    return _record(rid, entry, video_prefix, video_path, caption, rng, boxes, qtype)
