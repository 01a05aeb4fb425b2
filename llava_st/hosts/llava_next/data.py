"""Upstream LLaVA-NeXT's dataset and collator, extended with grounding targets and bad-sample handling.

`GroundingDataset` subclasses upstream's `LazySupervisedDataset` (llava/train/train.py @ df17966) and
leaves its text and image pipeline alone: QA / caption / conversation records go through exactly as
upstream handles them. For Uni-STG grounding records (the contract in `llava_st.data.schema`) it adds, per item,
`item["grounding"]` = {GROUNDING_BOXES: [F, 4] normalised cxcywh, GROUNDING_BOX_MASK: [F] bool,
GROUNDING_TEXT_INDEX: [T] token positions} (core.batch, padded by core.batch.collate_targets):

- STVG: videos are read with the one shared sampler (`llava_st.data.video.read_video`, which upstream's
  video reader is routed to, so the time instruction and the targets use the very same frame times);
  the gpt answer becomes `format_span` of the span snapped to sampled-frame times; boxes per sampled
  frame come from `data.targets.frame_targets` (mask True inside the snapped span).
- VTG: the snapped-span answer only (text loss); no box targets.
- REC: one box (`data.targets.image_targets`), F = 1.
- With `boxes_as_text` (query_mode "none", paper Table 7 row 1) STVG and REC answers carry the boxes
  as text (core.boxtext) and no targets are attached.
- GROUNDING_TEXT_INDEX holds the positions of the description's tokens in `input_ids` (before any visual splice).

Media paths follow the one data-root rule (`llava_st.data.paths.resolve_media`): a `video` must stay
inside `--video_folder`, an `image` inside `--image_folder` (no `..`, absolute path or symbolic link
leading out); records that break it are dropped at load as "path outside data root".

Bad samples (missing or corrupt video/image, invalid record, description not in the prompt) are logged
once with id and reason, counted, and replaced by another random sample in a loop (upstream recurses
on `i + 1`). `GroundingCollator` pads the per-item targets into the batch keys of core/batch.py.
"""

import copy
import logging
import os
import random
from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch
from llava.train import train as upstream
from llava.train.train import DataCollatorForSupervisedDataset, LazySupervisedDataset

from ...core.batch import GROUNDING_BOX_MASK, GROUNDING_BOXES, GROUNDING_TEXT_INDEX, collate_targets
from ...core.layout import description_token_positions
from ...core.timespan import format_frame_times
from ...data.bad_samples import PATH_OUTSIDE, BadSampleLog, summarize  # noqa: F401  (summarize: re-exported)
from ...data.paths import MediaPathError, path_problem, resolve_media
from ...data.schema import validate_record
from ...data.targets import frame_targets, grounding_answer, image_targets
from ...data.video import VideoReadError, read_video

logger = logging.getLogger(__name__)

BOX_TASKS = ("stvg", "rec")

# Videos read by GroundingDataset just before upstream's _get_item asks for them (path -> read result).
_PREREAD: Dict[str, tuple] = {}


def read_video_for_upstream(video_file: str, data_args):
    """Drop-in for llava/utils.py::process_video_with_decord @ df17966, reading through the shared sampler.

    Returns upstream's tuple (frames uint8 [F, H, W, 3], duration seconds, frame times "0.00s,...", F).
    Upstream's times are `index / round(fps)` outside forced sampling; these are `index / fps`, the
    times inference and eval use.
    """
    preread = _PREREAD.pop(video_file, None)
    frames, sample = preread or read_video(
        video_file, data_args.frames_upbound or 0, data_args.video_fps or 1, bool(data_args.force_sample)
    )
    return frames, sample.duration, format_frame_times(sample.times), sample.num_frames


class BadSample(Exception):
    """A record that cannot be trained on. `kind` is a short category for the counts."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def classify(exc: BaseException) -> str:
    """The count category of an exception raised while loading a sample."""
    if isinstance(exc, BadSample):
        return exc.kind
    if isinstance(exc, FileNotFoundError) or (isinstance(exc, VideoReadError) and "not found" in str(exc)):
        return "missing file"
    if isinstance(exc, (VideoReadError, OSError)):
        return "corrupt file"
    return "failed to load"


def record_problems(record) -> List[str]:
    """Problems of one record (no file access), each naming the id and field; [] when fine.

    Uni-STG records (with "task") go through the schema validator; plain LLaVA records (no "task", e.g.
    LLaVA-Video-178K mixed in) need only what upstream reads: a list of human/gpt turns with an answer.
    """
    if isinstance(record, dict) and "task" in record:
        return validate_record(record)
    convs = record.get("conversations") if isinstance(record, dict) else None
    ok = isinstance(convs, list) and convs and all(
        isinstance(c, dict) and c.get("from") in ("human", "gpt") and isinstance(c.get("value"), str) for c in convs
    )
    if not ok or not any(c["from"] == "gpt" for c in convs):
        return ["field=conversations: needs a list of turns with 'from' (human|gpt), a string 'value' and a gpt answer"]
    return []


def media_path_problems(record, data_args) -> List[str]:
    """Problems of a record's media paths under upstream's folders (data.paths rule), naming id and field;
    [] when every path stays inside its folder. A folder that is not set allows no check but the lexical one."""
    if not isinstance(record, dict):
        return []
    rid = record.get("id")
    problems = []
    for key, folder in (("video", data_args.video_folder), ("image", data_args.image_folder)):
        if key not in record:
            continue
        paths = record[key] if isinstance(record[key], list) else [record[key]]
        for n, path in enumerate(paths):
            name = key if len(paths) == 1 and not isinstance(record[key], list) else f"{key}[{n}]"
            try:
                if folder:
                    resolve_media(folder, path, rid, name)
                elif path_problem(path):
                    raise MediaPathError(rid, name, path_problem(path))
            except MediaPathError as exc:
                problems.append(str(exc))
    return problems


class GroundingDataset(LazySupervisedDataset):
    """Upstream's lazy dataset plus grounding targets and bad-sample replacement (see module docstring).

    Records failing `record_problems` are dropped at load (logged and counted); files that cannot be
    read are replaced at __getitem__ by another random sample, never crashing the run.
    """

    def __init__(self, data_path: str, tokenizer, data_args, seed: int = 0):
        super().__init__(data_path, tokenizer, data_args)
        upstream.process_video_with_decord = read_video_for_upstream
        self.bad = BadSampleLog()
        kept = []
        for index, record in enumerate(self.list_data_dict):
            problems = record_problems(record)
            sample_id = record.get("id", index) if isinstance(record, dict) else index
            if problems:
                self.bad.add(sample_id, "invalid record", "; ".join(problems), index=index)
            elif media_path_problems(record, data_args):
                self.bad.add(sample_id, PATH_OUTSIDE, "; ".join(media_path_problems(record, data_args)), index=index)
            else:
                kept.append(record)
        self.list_data_dict = kept
        if not kept:
            raise ValueError(f"no usable record in {data_path}: {dict(self.bad.counts)}")
        self._rng = random.Random(seed)
        self._bad_index = set()
        self._inside = False
        self.boxes_as_text = False  # the "boxes as text" ablation (query_mode "none"); set by the trainer

    def sample_id(self, i: int):
        return self.list_data_dict[i].get("id", i)

    def __getitem__(self, i) -> Dict:
        while True:
            try:
                return self._get_item(i)
            except Exception as exc:
                self._bad_index.add(i)
                self.bad.add(self.sample_id(i), classify(exc), str(exc))
                if len(self._bad_index) >= len(self):
                    raise RuntimeError(f"every one of the {len(self)} samples failed to load; counts: {dict(self.bad.counts)}") from exc
                i = self._replacement()

    def _replacement(self) -> int:
        while True:
            j = self._rng.randrange(len(self))
            if j not in self._bad_index:
                return j

    def _get_item(self, i) -> Dict:
        if self._inside:  # upstream's video branch failed and recursed on i + 1 (llava/train/train.py)
            raise BadSample("failed to load", "upstream could not process the video (its message is printed above)")
        record = self.list_data_dict[i]
        problems = media_path_problems(record, self.data_args)  # again: a link may have changed since the load
        if problems:
            raise BadSample(PATH_OUTSIDE, "; ".join(problems))
        prepared = copy.deepcopy(record)  # upstream writes the time instruction into the record it reads
        sample, video_path = None, None
        if "video" in record and "shareVideoGPTV" not in record["video"]:
            video_path = os.path.join(self.data_args.video_folder, record["video"])
            args = self.data_args
            frames, sample = read_video(video_path, args.frames_upbound or 0, args.video_fps or 1, bool(args.force_sample))
            _PREREAD[video_path] = (frames, sample)
        task = record.get("task")
        targets = None
        if task == "stvg":
            targets = frame_targets(record, sample.times)
        elif task == "rec":
            targets = image_targets(record, self.data_args.image_aspect_ratio)
        if task == "vtg":
            targets = frame_targets(record, sample.times)  # its span only: no box targets
        if targets is not None:
            times = sample.times if sample is not None else [0.0]
            _set_answer(prepared, grounding_answer(task, targets, times, self.boxes_as_text))
        self.list_data_dict[i] = prepared
        self._inside = True
        try:
            item = super()._get_item(i)
        finally:
            self._inside = False
            self.list_data_dict[i] = record
            _PREREAD.pop(video_path, None)
        if task in BOX_TASKS and not self.boxes_as_text:
            item["grounding"] = self._grounding(record["caption"], item["input_ids"], targets)
        return item

    def _grounding(self, caption: str, input_ids: torch.Tensor, targets) -> dict:
        caption = caption.strip().rstrip(".")
        text = description_token_positions(input_ids.tolist(), self.tokenizer, caption)
        if not text:
            raise BadSample("description not in prompt", f"caption: {caption!r} does not occur in the tokenised human turn")
        return {GROUNDING_BOXES: targets.boxes_cxcywh, GROUNDING_BOX_MASK: targets.mask,
                GROUNDING_TEXT_INDEX: torch.tensor(text, dtype=torch.long)}


def _set_answer(record: dict, answer: str) -> None:
    """Replace the first gpt turn of a (copied) record with `answer`."""
    for turn in record["conversations"]:
        if turn["from"] == "gpt":
            turn["value"] = answer
            return


@dataclass
class GroundingCollator(DataCollatorForSupervisedDataset):
    """Upstream's collator plus the grounding keys. They are present in every batch (all-False masks
    when no item is grounded), so every rank runs the same modules under ZeRO-3."""

    def __call__(self, instances: Sequence[Dict]) -> Dict[str, torch.Tensor]:
        batch = super().__call__(instances)
        batch.update(collate_targets([inst.get("grounding") for inst in instances], self.tokenizer.model_max_length))
        return batch


def make_data_module(tokenizer, data_args) -> Dict:
    """Replacement for llava/train/train.py::make_supervised_data_module @ df17966."""
    dataset = GroundingDataset(data_args.data_path, tokenizer, data_args)
    return dict(train_dataset=dataset, eval_dataset=None, data_collator=GroundingCollator(tokenizer=tokenizer))
