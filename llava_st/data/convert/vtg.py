"""Video temporal grounding sources -> Uni-STG vtg records: Charades-STA, DiDeMo, TACoS.

- Charades-STA (2D-TAN `data/Charades-STA/charades_sta_{train,test}.txt`): lines
  `3MSZA 24.3 30.4##person turn a light on.` in seconds; durations from `Charades_v1_{split}.csv`
  (`id`, `length` columns). As the loaders do, the end is clipped to the duration and start >= end dropped.
- DiDeMo (`LisaAnne/LocalizingMoments` `data/{train,val,test}_data.json`): a list of
  `{"num_segments", "description", "times": [[s, e], ...], "video", "annotation_id"}` where times are
  inclusive 5-second chunk indices, so (s, e) -> [5 s, 5 (e + 1)] seconds. The span is the annotators'
  most frequent pair (ties: the first given); all annotators' spans are kept in `annotator_spans` (the
  metric averages the best 3). Duration: from `durations` when given, else num_segments x 5 s.
- TACoS (2D-TAN `data/TACoS/{train,val,test}.json`): `{"s30-d52.avi": {"timestamps": [[f0, f1], ...],
  "sentences": [...], "fps": 29.4, "num_frames": 7346}}`; frame indices -> seconds by / fps, clipped to
  num_frames / fps.
"""

import csv
import json
import random
from collections import Counter
from typing import Dict, Iterator, Optional

from .common import Drops, clip_span, grounding_record, iter_progress

DIDEMO_CHUNK_SECONDS = 5.0


def read_charades_durations(csv_path: str) -> Dict[str, float]:
    """Video id -> duration (seconds) from a Charades_v1_{split}.csv (`id`, `length` columns)."""
    with open(csv_path, "r", encoding="utf-8", newline="") as f:
        return {row["id"]: float(row["length"]) for row in csv.DictReader(f) if row.get("length")}


def convert_charades_sta(
    ann: str,
    durations: str,
    seed: int = 0,
    video_prefix: str = "",
    video_ext: str = ".mp4",
    drops: Optional[Drops] = None,
) -> Iterator[dict]:
    """Yield vtg records from a Charades-STA txt file; `durations` is the Charades_v1_{split}.csv."""
    drops = Drops() if drops is None else drops
    rng = random.Random(seed)
    lengths = read_charades_durations(durations)
    with open(ann, "r", encoding="utf-8") as f:
        for line_no, line in enumerate(iter_progress(f, "charades-sta"), 1):
            if not line.strip():
                continue
            rid = f"charades_{line_no}"
            try:
                head, sentence = line.rstrip("\n").split("##", 1)
                vid, start, end = head.split()
                start, end = float(start), float(end)
            except ValueError:
                drops.note(f"line {line_no} is not 'VID START END##SENTENCE'", rid)
                continue
            if vid not in lengths:
                drops.note(f"no duration for video {vid} in {durations}", rid)
                continue
            span = clip_span(start, end, lengths[vid])
            if span is None or not sentence.strip():
                drops.note("empty span after clipping to the duration, or empty sentence", rid)
                continue
            yield grounding_record(
                f"{rid}_{vid}",
                "vtg",
                f"{video_prefix}{vid}{video_ext}",
                sentence,
                rng,
                span=span,
                duration=lengths[vid],
                source="charades-sta",
            )


def didemo_span(times) -> tuple:
    """The most frequent annotator (s, e) chunk pair (ties: first given) -> span (seconds)."""
    pairs = [tuple(int(v) for v in t) for t in times]
    counts = Counter(pairs)
    best = max(pairs, key=lambda p: (counts[p], -pairs.index(p)))
    return _chunks_to_seconds(best)


def _chunks_to_seconds(pair) -> tuple:
    s, e = pair
    if e < s:
        raise ValueError(f"reversed chunk pair {list(pair)}")
    return s * DIDEMO_CHUNK_SECONDS, (e + 1) * DIDEMO_CHUNK_SECONDS


def convert_didemo(
    ann: str, seed: int = 0, video_prefix: str = "", durations: Optional[str] = None, drops: Optional[Drops] = None
) -> Iterator[dict]:
    """Yield vtg records from a DiDeMo {split}_data.json; `durations` is an optional JSON {video: seconds}."""
    drops = Drops() if drops is None else drops
    rng = random.Random(seed)
    with open(ann, "r", encoding="utf-8") as f:
        items = json.load(f)
    lengths = {}
    if durations:
        with open(durations, "r", encoding="utf-8") as f:
            lengths = json.load(f)
    for item in iter_progress(items, "didemo", total=len(items)):
        rid = f"didemo_{item.get('annotation_id', '?')}" if isinstance(item, dict) else "didemo_?"
        try:
            duration = float(lengths.get(item["video"], item["num_segments"] * DIDEMO_CHUNK_SECONDS))
            span = clip_span(*didemo_span(item["times"]), duration)
            annotators = [list(clip_span(*_chunks_to_seconds(t), duration) or ()) for t in item["times"]]
            sentence = item["description"]
        except (KeyError, TypeError, ValueError) as e:
            drops.note(f"bad source field: {type(e).__name__}: {e}", rid)
            continue
        if span is None:
            drops.note("empty span after clipping to the duration", rid)
            continue
        yield grounding_record(
            rid,
            "vtg",
            video_prefix + item["video"],
            sentence,
            rng,
            span=span,
            duration=duration,
            annotator_spans=[a for a in annotators if a],
            source="didemo",
        )


def convert_tacos(ann: str, seed: int = 0, video_prefix: str = "", drops: Optional[Drops] = None) -> Iterator[dict]:
    """Yield vtg records from a TACoS {split}.json of 2D-TAN."""
    drops = Drops() if drops is None else drops
    rng = random.Random(seed)
    with open(ann, "r", encoding="utf-8") as f:
        data = json.load(f)
    for name, item in iter_progress(data.items(), "tacos", total=len(data)):
        stem = name.rsplit(".", 1)[0]
        try:
            fps = float(item["fps"])
            duration = item["num_frames"] / fps
            pairs = list(zip(item["timestamps"], item["sentences"], strict=True))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            drops.note(f"bad source field: {type(e).__name__}: {e}", f"tacos_{stem}")
            continue
        for k, ((f0, f1), sentence) in enumerate(pairs):
            rid = f"tacos_{stem}_{k}"
            span = clip_span(f0 / fps, f1 / fps, duration)
            if span is None or not sentence.strip():
                drops.note("empty span after clipping to the duration, or empty sentence", rid)
                continue
            yield grounding_record(
                rid,
                "vtg",
                video_prefix + name,
                sentence,
                rng,
                span=span,
                duration=duration,
                fps=fps,
                source="tacos",
            )
