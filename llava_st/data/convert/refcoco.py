"""RefCOCO / RefCOCO+ / RefCOCOg (`lichengunc/refer`) -> Uni-STG rec records, one per sentence.

Source: `refs(<splitBy>).p` — a pickle list of {ref_id, ann_id, category_id, image_id, file_name, split,
sent_ids, sentences: [{tokens, raw, sent_id, sent}]} (a JSON export of the same list is accepted and
preferred) — and `instances.json` (COCO: images {id, file_name, width, height}, annotations {id, bbox
[x, y, w, h] pixels}). splitBy: unc for RefCOCO / RefCOCO+ (train/val/testA/testB), umd for RefCOCOg
(train/val/test). The image path is `image_prefix` + the COCO image file name.

Unpickling runs code from the file: a .p file is read only with `allow_pickle=True`, for the user's own
trusted copy of the official file.

Bad entries (wrong types, NaN/inf, negative box sizes, unknown image or annotation ids, ...) are reported
through `drops` by field and ref (a bad sentence by its own id), and the other entries converted.
"""

import pickle
import random
from typing import Iterator, Optional

from .common import (
    ENTRY_ERRORS,
    BadEntry,
    ConvertInputError,
    Drops,
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

DATASETS = ("refcoco", "refcoco+", "refcocog")


def load_refs(refs_path: str, allow_pickle: bool = False) -> list:
    """The refs list from a JSON export or (with `allow_pickle`, trusted files only) the official pickle."""
    if refs_path.endswith(".json"):
        return load_json(refs_path, list, "an array of refs")
    if not allow_pickle:
        raise ValueError(
            f"{refs_path} is a pickle: unpickling runs code from the file. Pass allow_pickle=True "
            "(CLI: --allow-pickle) only for your own trusted copy of the official file, or export it to JSON."
        )
    with open(refs_path, "rb") as f:
        try:
            refs = pickle.load(f)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as e:
            raise ConvertInputError(f"{refs_path}: not a readable pickle ({type(e).__name__}: {short(str(e))})") from None
    if not isinstance(refs, list):
        raise ConvertInputError(f"{refs_path}: expected a list of refs, got a {type(refs).__name__}")
    return refs


def _index(coco: dict, key: str, instances: str, drops: Drops) -> dict:
    """COCO `key` entries ("images" / "annotations") by id; an entry without a usable id is noted."""
    entries = coco.get(key)
    if not isinstance(entries, list):
        raise ConvertInputError(f'{instances}: expected "{key}" (an array) in the top-level object')
    index = {}
    for j, entry in enumerate(entries):
        try:
            index[key_id(need(mapping(entry, f"{key} entry"), "id", f"{key} id"), f"{key} id")] = entry
        except BadEntry as e:
            drops.note(f"{instances}: {e.reason}", f"{key}[{j}]", e.detail)
    return index


def convert_refcoco(
    refs: str,
    instances: str,
    dataset: str = "refcoco",
    split: Optional[str] = None,
    seed: int = 0,
    image_prefix: str = "",
    allow_pickle: bool = False,
    drops: Optional[Drops] = None,
) -> Iterator[dict]:
    """Yield rec records of `split` (all splits when None) from a refs file and COCO instances.json."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    drops = Drops() if drops is None else drops
    rng = random.Random(seed)
    coco = load_json(instances, dict, "a COCO instances object")
    images, anns = _index(coco, "images", instances, drops), _index(coco, "annotations", instances, drops)
    ref_list = load_refs(refs, allow_pickle)
    for i, ref in enumerate(iter_progress(ref_list, dataset, total=len(ref_list))):
        rid = f"{dataset}[{i}]"
        try:
            ref = mapping(ref, "ref")
            ref_split = text(need(ref, "split"), "split")
            if split is not None and ref_split != split:
                continue
            rid = f"{dataset}_{key_id(need(ref, 'ref_id'), 'ref_id')}"
            image = images.get(key_id(need(ref, "image_id"), "image_id"))
            ann = anns.get(key_id(need(ref, "ann_id"), "ann_id"))
            if image is None or ann is None:
                raise BadEntry("image_id" if image is None else "ann_id", f"not in {instances}")
            width = number(need(image, "width", "image width"), "image width", positive=True)
            height = number(need(image, "height", "image height"), "image height", positive=True)
            file_name = text(need(image, "file_name", "image file_name"), "image file_name")
            xyxy = xywh_to_xyxy_clipped(xywh_box(need(ann, "bbox", "annotation bbox"), "annotation bbox"), width, height)
            sentences = sequence(need(ref, "sentences"), "sentences")
            if not sentences:
                raise BadEntry("sentences", "empty")
        except ENTRY_ERRORS as e:
            drops.error(e, rid)
            continue
        if xyxy is None:
            drops.note("box of zero area inside the image", rid)
            continue
        for k, s in enumerate(sentences):
            sid = f"{rid}_s{k}"
            try:
                s = mapping(s, "sentence")
                sid = f"{rid}_{key_id(need(s, 'sent_id', 'sentence sent_id'), 'sentence sent_id')}"
                sentence = need(s, "sent", "sentence sent")
                if isinstance(sentence, str) and not sentence.strip():
                    drops.note("empty sentence", sid)
                    continue
                record = grounding_record(
                    sid,
                    "rec",
                    image_prefix + file_name,
                    text(sentence, "sentence sent"),
                    rng,
                    boxes=[{"t": 0.0, "xyxy": xyxy}],
                    width=width,
                    height=height,
                    split=ref_split,
                    source=dataset,
                )
            except ENTRY_ERRORS as e:
                drops.error(e, sid)
                continue
            yield record
