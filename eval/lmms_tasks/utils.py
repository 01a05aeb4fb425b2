"""lmms-eval hooks of the llava_st grounding tasks (STVG / VTG / REC over Uni-STG test files).

Documents are Uni-STG records; their video/image paths are relative to $LLAVA_ST_DATA_ROOT (default: the
current directory). The llava_st model answers a grounding request with the predicted tube as JSON
(llava_st.eval.lmms_plugin); an unparsable response scores 0. Scores come from llava_st.eval.metrics.
"""

import json
import os

from llava_st.data.paths import resolve_media
from llava_st.eval import metrics as M


def doc_to_visual(doc):
    """The document's video or image under $LLAVA_ST_DATA_ROOT (data.paths rule: MediaPathError, naming id
    and field, for `..`, absolute paths and links leading out of it)."""
    key = "video" if doc.get("video") else "image"
    return [str(resolve_media(os.environ.get("LLAVA_ST_DATA_ROOT", "."), doc.get(key), doc.get("id"), key))]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["caption"]


def _tube(results):
    try:
        tube = json.loads(results[0])
    except (json.JSONDecodeError, TypeError, IndexError):
        return None
    return tube if isinstance(tube, dict) and tube.get("status", "ok") == "ok" else None


def stvg_process_results(doc, results):
    s = M.score_stvg(doc, _tube(results), M.HCSTVG_OFFICIAL)
    return {"m_tIoU": s["tiou"], "m_vIoU": s["viou"], "vIoU@0.3": float(s["viou"] > 0.3), "vIoU@0.5": float(s["viou"] > 0.5)}


def vtg_process_results(doc, results):
    tube = _tube(results)
    iou = float(M.vtg_ious([tube.get("span") if tube else None], [doc["span"]])[0])
    return {**{f"R@1,IoU={m:g}": float(iou >= m) for m in M.VTG_THRESHOLDS}, "mIoU": iou}


def rec_process_results(doc, results):
    tube = _tube(results)
    box = tube["frames"][0]["box_xyxy"] if tube and tube.get("frames") else None
    iou = float(M.rec_ious([box], [doc["boxes"][0]["xyxy"]])[0])
    return {"Acc@0.5": float(iou >= 0.5), "mIoU": iou}
