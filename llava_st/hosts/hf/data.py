"""Uni-STG records -> model inputs for the transformers host, and the collator.

One item: input_ids / labels (answer tokens only), the pixels of its video (pixel_values_videos
[F, 3, S, S]) or image (pixel_values [patches, 3, S, S] + image_sizes [2] = (H, W)), and the grounding
targets of core/batch.py for its F sampled frames (F = 1 for an image), and the layout of its visual
block as the processor wrote it (GROUNDING_LAYOUT; the collator makes the batch's index of it).
"""

import logging
import random
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ...core.batch import GROUNDING_BOX_MASK, GROUNDING_BOXES, GROUNDING_TEXT_INDEX, collate_targets
from ...core.layout import GroundingIndex, description_token_positions
from ...data.bad_samples import CORRUPT, INVALID, MISSING, NOT_IN_PROMPT, PATH_OUTSIDE, BadSampleLog
from ...data.paths import MediaPathError, resolve_media
from ...data.schema import validate_record
from ...data.targets import FrameTargets, frame_targets, grounding_answer, image_targets
from ...data.templates import instruction
from ...data.video import VideoReadError, read_video
from .processor import pad_ids
from .prompt import answer_segment, image_prefix, question_suffix, video_prefix

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
GROUNDING_LAYOUT = "grounding_layout"  # an item's BlockLayout (positions in its input_ids), or None
GROUNDING_TASKS = ("stvg", "vtg", "rec")


class RecordError(ValueError):
    """A record that cannot be turned into a training item; the message names its id and field, `kind` is
    the count category (data.bad_samples)."""

    def __init__(self, message: str, kind: str = INVALID):
        super().__init__(message)
        self.kind = kind


def load_image(path: str) -> np.ndarray:
    """uint8 RGB [H, W, 3] of an image file."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class STDataset(Dataset):
    """Training items from Uni-STG records (dicts) whose media paths are relative to `data_root`.

    frames: frames_upbound of core sampling (data.video.read_video); force_sample: always take exactly
    that many. Grounding records (stvg/vtg/rec) take their question from `conversations` when present,
    else from data.templates; STVG/VTG answers are format_span of the span snapped to the sampled frames,
    REC's is REC_ANSWER; with the processor's query_mode "none" the answer carries the boxes as text.
    Other tasks use their conversations as they are. Media paths follow the one data-root rule
    (data.paths.resolve_media: no `..`, absolute path or link out of `data_root`).

    Every record is validated at load (data.schema.validate_record with the data root; the gpt turn of a
    grounding record is not needed, the answer is computed): a bad one (not an object, a reversed span, a
    grounding record without boxes, a path out of the root, ...) is dropped, logged once with its id and
    field and counted by kind in `self.bad` (data.bad_samples, as the LLaVA-NeXT host). A sample that
    fails when read (a missing or corrupt file, the description not found in the prompt) is logged and
    counted once and replaced by a random other sample (seeded), so a run loses nothing else.
    """

    def __init__(self, records: Sequence[dict], data_root, processor, frames: int = 16, force_sample: bool = True, seed: int = 0):
        self.root = str(data_root)
        self.processor = processor
        self.frames = frames
        self.force_sample = force_sample
        self.seed = seed
        self.bad = BadSampleLog()
        self.records, self._positions = [], []  # kept records and their positions in `records`
        for index, record in enumerate(records):
            problems = record_problems(record, self.root)
            if problems:
                rid = record.get("id", index) if isinstance(record, dict) else index
                kind = PATH_OUTSIDE if any("escapes the data root" in p or "relative to the data root" in p for p in problems) else INVALID
                self.bad.add(rid, kind, "; ".join(problems), index=index)
            else:
                self.records.append(record)
                self._positions.append(index)
        if not self.records:
            raise ValueError(f"no usable training record: {dict(self.bad.counts) or 'none given'}")
        self._bad_index = set()
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        while True:
            record = self.records[i]
            try:
                return self.item(record, random.Random(self.seed * 1_000_003 + i))
            except Exception as exc:  # RecordError names id and field; anything else is still this sample's
                self._bad_index.add(i)
                rid = record.get("id", i)
                kind, message = (exc.kind, str(exc)) if isinstance(exc, RecordError) else ("failed to load", f"record {rid}: {exc!r}")
                self.bad.add(rid, kind, message, index=self._positions[i])
                if len(self._bad_index) >= len(self.records):
                    raise RuntimeError(f"no record of the dataset could be used: {dict(self.bad.counts)}") from exc
                i = self._replacement()

    def _replacement(self) -> int:
        """A random sample not known to be bad (seeded), never simply the next one."""
        while True:
            j = self._rng.randrange(len(self.records))
            if j not in self._bad_index:
                return j

    def item(self, record: dict, rng: Optional[random.Random] = None) -> dict:
        """One model input from one record (see the class docstring); raises RecordError."""
        rid = record.get("id", "<no id>")
        task = record.get("task")
        if task is None:
            raise RecordError(f"record {rid}: field 'task' is missing")
        if "video" in record:
            try:
                frames, sample = read_video(str(self._media(record, rid, "video")), self.frames, force_sample=self.force_sample)
            except RecordError:
                raise
            except Exception as exc:
                missing = isinstance(exc, FileNotFoundError) or (isinstance(exc, VideoReadError) and "not found" in str(exc))
                raise RecordError(f"record {rid}: field 'video': {exc}", MISSING if missing else CORRUPT) from exc
            prefix = video_prefix(sample.num_frames, sample.duration, sample.times)
            item = {"pixel_values_videos": self.processor.video_pixels(frames)}
            times = sample.times
        elif "image" in record:
            try:
                image = load_image(str(self._media(record, rid, "image")))
            except RecordError:
                raise
            except Exception as exc:
                kind = MISSING if isinstance(exc, FileNotFoundError) else CORRUPT
                raise RecordError(f"record {rid}: field 'image': cannot read {record['image']}: {exc}", kind) from exc
            prefix = image_prefix(image.shape[0], image.shape[1])
            item = dict(zip(("pixel_values", "image_sizes"), self.processor.image_pixels(image)))
            times = [0.0]
        else:
            raise RecordError(f"record {rid}: needs a 'video' or an 'image' field")

        targets = self._targets(record, rid, task, times) if task in GROUNDING_TASKS else None
        turns = self._turns(record, rid, task, times, targets, rng)
        ids, layouts = self.processor.encode_with_layouts(prefix)
        item[GROUNDING_LAYOUT] = self.processor.grounding_layout(layouts)
        labels = [IGNORE_INDEX] * len(ids)
        text_start = len(ids)
        for n, (question, answer) in enumerate(turns):
            q = self.processor.encode(question_suffix(question, first_turn=n == 0))
            a = self.processor.encode(answer_segment(answer))
            ids += q + a
            labels += [IGNORE_INDEX] * len(q) + a
        item.update(input_ids=ids, labels=labels)

        F = len(times)
        item[GROUNDING_BOXES], item[GROUNDING_BOX_MASK] = torch.zeros(F, 4), torch.zeros(F, dtype=torch.bool)
        item[GROUNDING_TEXT_INDEX] = []
        if targets is not None:
            if task != "vtg":
                item[GROUNDING_BOXES], item[GROUNDING_BOX_MASK] = targets.boxes_cxcywh, targets.mask
            positions = description_token_positions(ids, self.processor.tokenizer, record["caption"], start=text_start)
            if not positions:
                raise RecordError(f"record {rid}: field 'caption': its text does not occur in the question", NOT_IN_PROMPT)
            item[GROUNDING_TEXT_INDEX] = positions
        return item

    def _media(self, record, rid, key: str):
        """The record's media file under the data root (data.paths rule); RecordError naming id and field."""
        try:
            return resolve_media(self.root, record[key], rid, key)
        except MediaPathError as exc:
            raise RecordError(f"record {rid}: field {key!r}: {exc.reason}", PATH_OUTSIDE) from exc

    def _targets(self, record, rid, task, times) -> FrameTargets:
        try:
            if task == "rec":
                return image_targets(record)
            if record.get("span") is None:
                raise KeyError("span")
            return frame_targets(record, times)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RecordError(f"record {rid}: field {exc.args[0] if isinstance(exc, KeyError) else 'boxes/span'}: {exc}") from exc

    def _turns(self, record, rid, task, times, targets, rng) -> List[tuple]:
        """[(question, answer)] of the record; grounding answers are computed here (class docstring)."""
        convs = record.get("conversations") if isinstance(record.get("conversations"), list) else []
        convs = [c for c in convs if isinstance(c, dict) and isinstance(c.get("value", ""), str)]
        humans = [c.get("value", "") for c in convs if c.get("from") == "human"]
        gpts = [c.get("value", "") for c in convs if c.get("from") == "gpt"]
        if humans:
            humans[0] = humans[0].replace("<image>", "").replace("<video>", "").strip()
        if task not in GROUNDING_TASKS:
            if not humans or len(humans) != len(gpts):
                raise RecordError(f"record {rid}: field 'conversations': needs alternating human/gpt turns")
            return list(zip(humans, gpts))
        caption = record.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            raise RecordError(f"record {rid}: field 'caption': missing or empty")
        question = humans[0] if humans else instruction(task, caption, rng)
        return [(question, grounding_answer(task, targets, times, boxes_as_text=self.processor.query_mode == "none"))]


def record_problems(record, data_root=None) -> List[str]:
    """Why a record cannot train on this host (data.schema.validate_record, naming id and field; for a
    grounding record the answer turn is computed, so its conversations are not checked), [] when it can."""
    if not isinstance(record, dict):
        return [f"id=? field=record: a record must be a JSON object, got {type(record).__name__}"]
    grounding = record.get("task") in GROUNDING_TASKS
    return validate_record(record, data_root, conversations=not grounding)


class STCollator:
    """Items of STDataset -> one batch: input_ids / labels / attention_mask [B, L] (right padded),
    pixel_values_videos [V, F, 3, S, S] (every video of a batch must have the same F),
    pixel_values [I, patches_max, 3, S, S] + image_sizes [I, 2], and the grounding keys of core/batch.py
    (boxes [B, F_max, 4] normalised cxcywh, masks, description positions in input_ids) and the items'
    visual/query positions as laid out by the processor (core.layout.GROUNDING_LAYOUT_KEYS)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, items: List[dict]) -> dict:
        batch = pad_ids([it["input_ids"] for it in items], self.pad_token_id)
        labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
        for b, it in enumerate(items):
            labels[b, : len(it["labels"])] = torch.tensor(it["labels"])
        batch["labels"] = labels
        videos = [it["pixel_values_videos"] for it in items if "pixel_values_videos" in it]
        if videos:
            if len({v.shape for v in videos}) != 1:
                raise ValueError(f"videos of one batch need the same number of frames, got {[v.shape[0] for v in videos]}")
            batch["pixel_values_videos"] = torch.stack(videos)
        images = [it["pixel_values"] for it in items if "pixel_values" in it]
        if images:
            most = max(im.shape[0] for im in images)
            padded = torch.zeros((len(images), most, *images[0].shape[1:]), dtype=images[0].dtype)
            for n, im in enumerate(images):
                padded[n, : im.shape[0]] = im
            batch["pixel_values"] = padded
            batch["image_sizes"] = torch.stack([torch.as_tensor(it["image_sizes"]) for it in items if "pixel_values" in it])
        batch.update(collate_targets(items))
        if all(GROUNDING_LAYOUT in it for it in items) and any(it[GROUNDING_LAYOUT] is not None for it in items):
            batch.update(GroundingIndex.collate([it[GROUNDING_LAYOUT] for it in items], [None] * len(items)).layout_batch())
        return batch
