"""RefCOCO / RefCOCO+ / RefCOCOg (`lichengunc/refer`) -> Uni-STG rec records, one per sentence.

Source: `refs(<splitBy>).p` — a pickle list of {ref_id, ann_id, category_id, image_id, file_name, split,
sent_ids, sentences: [{tokens, raw, sent_id, sent}]} (a JSON export of the same list is accepted and
preferred) — and `instances.json` (COCO: images {id, file_name, width, height}, annotations {id, bbox
[x, y, w, h] pixels}). splitBy: unc for RefCOCO / RefCOCO+ (train/val/testA/testB), umd for RefCOCOg
(train/val/test). The image path is `image_prefix` + the COCO image file name.

Unpickling runs code from the file: a .p file is read only with `allow_pickle=True`, for the user's own
trusted copy of the official file.
"""

import json
import pickle
import random
from typing import Iterator, Optional

from .common import Drops, grounding_record, iter_progress, xywh_to_xyxy_clipped

DATASETS = ("refcoco", "refcoco+", "refcocog")


def load_refs(refs_path: str, allow_pickle: bool = False) -> list:
    """The refs list from a JSON export or (with `allow_pickle`, trusted files only) the official pickle."""
    if refs_path.endswith(".json"):
        with open(refs_path, "r", encoding="utf-8") as f:
            return json.load(f)
    if not allow_pickle:
        raise ValueError(
            f"{refs_path} is a pickle: unpickling runs code from the file. Pass allow_pickle=True "
            "(CLI: --allow-pickle) only for your own trusted copy of the official file, or export it to JSON."
        )
    with open(refs_path, "rb") as f:
        return pickle.load(f)


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
    with open(instances, "r", encoding="utf-8") as f:
        coco = json.load(f)
    images = {im["id"]: im for im in coco["images"]}
    anns = {a["id"]: a for a in coco["annotations"]}
    ref_list = load_refs(refs, allow_pickle)
    for ref in iter_progress(ref_list, dataset, total=len(ref_list)):
        if split is not None and ref.get("split") != split:
            continue
        rid = f"{dataset}_{ref.get('ref_id', '?')}"
        try:
            image, ann = images[ref["image_id"]], anns[ref["ann_id"]]
            width, height = image["width"], image["height"]
            xyxy = xywh_to_xyxy_clipped(ann["bbox"], width, height)
            sentences = [(s["sent_id"], s["sent"]) for s in ref["sentences"]]
        except (KeyError, TypeError, ValueError) as e:
            drops.note(f"bad source field: {type(e).__name__}: {e}", rid)
            continue
        if xyxy is None:
            drops.note("box of zero area inside the image", rid)
            continue
        for sent_id, sentence in sentences:
            if not sentence.strip():
                drops.note("empty sentence", f"{rid}_{sent_id}")
                continue
            yield grounding_record(
                f"{rid}_{sent_id}",
                "rec",
                image_prefix + image["file_name"],
                sentence,
                rng,
                boxes=[{"t": 0.0, "xyxy": xyxy}],
                width=width,
                height=height,
                split=ref["split"],
                source=dataset,
            )
