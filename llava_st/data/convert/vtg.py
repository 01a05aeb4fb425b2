"""Video temporal grounding sources -> Uni-STG vtg records: Charades-STA, DiDeMo, TACoS.

- Charades-STA (2D-TAN `data/Charades-STA/charades_sta_{train,test}.txt`): lines
  `3MSZA 24.3 30.4##person turn a light on.` in seconds; durations from `Charades_v1_{split}.csv`
  (`id`, `length` columns). As the loaders do, the end is clipped to the duration and start >= end dropped;
  a non-finite or negative time is reported, not clipped.
- DiDeMo (`LisaAnne/LocalizingMoments` `data/{train,val,test}_data.json`): a list of
  `{"num_segments", "description", "times": [[s, e], ...], "video", "annotation_id"}` where times are
  inclusive 5-second chunk indices, so (s, e) -> [5 s, 5 (e + 1)] seconds. The span is the annotators'
  most frequent pair (ties: the first given); all annotators' spans are kept in `annotator_spans` (the
  metric averages the best 3). Duration: from `durations` when given, else num_segments x 5 s.
- TACoS (2D-TAN `data/TACoS/{train,val,test}.json`): `{"s30-d52.avi": {"timestamps": [[f0, f1], ...],
  "sentences": [...], "fps": 29.4, "num_frames": 7346}}`. The timestamps are frames, read as the first
  and last (inclusive) frame of the moment, so by the time contract of core.timespan the span is
  frames_to_span(f0, f1, fps) = [f0/fps, f1/fps] seconds (the seconds 2D-TAN's loader computes), with f1
  cut to the video's last frame num_frames - 1 (2D-TAN cuts the end to num_frames/fps, one frame later;
  this only moves moments running past the video's end). Frame numbers must be integral.

Every time is seconds (vtg records have no boxes). Bad entries (wrong types, NaN/inf, non-integral frame
or chunk numbers, ...) are reported through `drops` by field and entry, and the other entries converted.
"""

import csv
import math
import random
from collections import Counter
from typing import Dict, Iterator, Optional

from .common import (
    ENTRY_ERRORS,
    BadEntry,
    ConvertInputError,
    Drops,
    clip_span,
    closed_span,
    duration_of,
    frame_number,
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
)

DIDEMO_CHUNK_SECONDS = 5.0


def read_charades_durations(csv_path: str, drops: Optional[Drops] = None) -> Dict[str, float]:
    """Video id -> duration (seconds) from a Charades_v1_{split}.csv (`id`, `length` columns); a row whose
    length is not a positive finite number is left out (noted in `drops` when given)."""
    lengths = {}
    try:
        with open(csv_path, "r", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"id", "length"} <= set(reader.fieldnames):
                raise ConvertInputError(f"{csv_path}: not a Charades csv (needs 'id' and 'length' columns)")
            for row_no, row in enumerate(reader, 2):
                if not row.get("length"):
                    continue
                try:
                    length = float(row["length"])
                except ValueError:
                    length = math.nan
                if not (math.isfinite(length) and length > 0):
                    if drops is not None:
                        drops.note(f"bad length in {csv_path}: not a positive finite number", f"row {row_no} id={row['id']}")
                    continue
                lengths[row["id"]] = length
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConvertInputError(f"{csv_path}: not a readable csv ({short(str(e))})") from None
    return lengths


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
    lengths = read_charades_durations(durations, drops)
    with open(ann, "rb") as f:
        for line_no, raw in enumerate(iter_progress(f, "charades-sta"), 1):
            rid = f"charades_{line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                drops.note("line is not UTF-8 text", rid)
                continue
            if not line.strip():
                continue
            try:
                head, sentence = line.rstrip("\r\n").split("##", 1)
                vid, start, end = head.split()
                start, end = float(start), float(end)
            except ValueError:
                drops.note("line is not 'VID START END##SENTENCE'", rid)
                continue
            rid = f"{rid}_{vid}"
            if not (math.isfinite(start) and math.isfinite(end)):
                drops.note("bad time: not a finite number", rid, f"{start} {end}")
                continue
            if start < 0:
                drops.note("bad time: negative start", rid, f"{start}")
                continue
            if vid not in lengths:
                drops.note(f"no duration for the video in {durations}", rid)
                continue
            span = clip_span(start, end, lengths[vid])
            if span is None or not sentence.strip():
                drops.note("empty span after clipping to the duration, or empty sentence", rid)
                continue
            try:
                yield grounding_record(
                    rid,
                    "vtg",
                    f"{video_prefix}{vid}{video_ext}",
                    sentence,
                    rng,
                    span=span,
                    duration=lengths[vid],
                    source="charades-sta",
                )
            except ENTRY_ERRORS as e:
                drops.error(e, rid)


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


def _didemo_times(value) -> list:
    """The checked `times` of a DiDeMo entry: a non-empty list of [s, e] integral chunk indices, s <= e."""
    pairs = []
    for k, pair in enumerate(sequence(value, "times")):
        if not isinstance(pair, list) or len(pair) != 2:
            raise BadEntry("times", "not a list of [s, e] chunk pairs", pair, f"times[{k}]")
        s, e = (frame_number(v, "times chunk") for v in pair)
        if e < s:
            raise BadEntry("times", "reversed chunk pair", pair, f"times[{k}]")
        pairs.append((s, e))
    if not pairs:
        raise BadEntry("times", "empty")
    return pairs


def convert_didemo(
    ann: str, seed: int = 0, video_prefix: str = "", durations: Optional[str] = None, drops: Optional[Drops] = None
) -> Iterator[dict]:
    """Yield vtg records from a DiDeMo {split}_data.json; `durations` is an optional JSON {video: seconds}."""
    drops = Drops() if drops is None else drops
    rng = random.Random(seed)
    items = load_json(ann, list, "an array of DiDeMo entries")
    lengths = load_json(durations, dict, "an object {video: seconds}") if durations else {}
    for i, item in enumerate(iter_progress(items, "didemo", total=len(items))):
        rid = f"didemo[{i}]"
        try:
            item = mapping(item, "entry")
            rid = f"didemo_{key_id(need(item, 'annotation_id'), 'annotation_id')}"
            video = text(need(item, "video"), "video")
            if video in lengths:
                duration = float(number(lengths[video], f"duration in {durations}", positive=True))
            else:
                duration = frame_number(need(item, "num_segments"), "num_segments", low=1) * DIDEMO_CHUNK_SECONDS
            times = _didemo_times(need(item, "times"))
            sentence = text(need(item, "description"), "description")
            span = clip_span(*didemo_span(times), duration)
            annotators = [list(clip_span(*_chunks_to_seconds(t), duration) or ()) for t in times]
            if span is None:
                drops.note("empty span after clipping to the duration", rid)
                continue
            record = grounding_record(
                rid,
                "vtg",
                video_prefix + video,
                sentence,
                rng,
                span=span,
                duration=duration,
                annotator_spans=[a for a in annotators if a],
                source="didemo",
            )
        except ENTRY_ERRORS as e:
            drops.error(e, rid)
            continue
        yield record


def convert_tacos(ann: str, seed: int = 0, video_prefix: str = "", drops: Optional[Drops] = None) -> Iterator[dict]:
    """Yield vtg records from a TACoS {split}.json of 2D-TAN."""
    drops = Drops() if drops is None else drops
    rng = random.Random(seed)
    data = load_json(ann, dict, "an object keyed by video file name")
    for name, item in iter_progress(data.items(), "tacos", total=len(data)):
        stem = name.rsplit(".", 1)[0]
        try:
            item = mapping(item, "entry")
            fps = float(number(need(item, "fps"), "fps", positive=True))
            num_frames = frame_number(need(item, "num_frames"), "num_frames", low=1)
            duration = duration_of(num_frames, fps)
            timestamps = sequence(need(item, "timestamps"), "timestamps")
            sentences = sequence(need(item, "sentences"), "sentences")
            if len(timestamps) != len(sentences):
                raise BadEntry("timestamps", "not one per sentence", [len(timestamps), len(sentences)])
            if not sentences:
                raise BadEntry("sentences", "empty (no moment in the video)")
        except ENTRY_ERRORS as e:
            drops.error(e, f"tacos_{stem}")
            continue
        for k, (pair, sentence) in enumerate(zip(timestamps, sentences)):
            rid = f"tacos_{stem}_{k}"
            try:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise BadEntry("timestamps", "not [f0, f1] frames", pair, f"timestamps[{k}]")
                f0, f1 = (frame_number(v, "timestamps frame") for v in pair)
                if f1 < f0:
                    raise BadEntry("timestamps", "reversed frame pair", pair, f"timestamps[{k}]")
                sentence = text(sentence, "sentences")
                last = min(f1, num_frames - 1)  # cut to the video's last frame
                if last <= f0:
                    drops.note("empty span after clipping to the duration, or empty sentence", rid)
                    continue
                record = grounding_record(
                    rid,
                    "vtg",
                    video_prefix + name,
                    sentence,
                    rng,
                    span=closed_span(f0, last, fps, "timestamps"),
                    duration=duration,
                    fps=fps,
                    source="tacos",
                )
            except ENTRY_ERRORS as e:
                drops.error(e, rid)
                continue
            yield record
