"""Converters from the official annotation formats to Uni-STG records (one module per dataset family).

`CONVERTERS` maps the CLI dataset name to (function, fixed keyword arguments); each function yields
records and counts what it skipped in `drops` (a convert.common.Drops).
"""

from .common import Drops
from .hcstvg import convert_hcstvg
from .refcoco import convert_refcoco
from .vidstg import convert_vidstg, convert_vidstg_tubedetr
from .vtg import convert_charades_sta, convert_didemo, convert_tacos

CONVERTERS = {
    "hcstvg-v1": (convert_hcstvg, {"version": 1}),
    "hcstvg-v2": (convert_hcstvg, {"version": 2}),
    "vidstg": (convert_vidstg, {}),
    "vidstg-tubedetr": (convert_vidstg_tubedetr, {}),
    "charades-sta": (convert_charades_sta, {}),
    "didemo": (convert_didemo, {}),
    "tacos": (convert_tacos, {}),
    "refcoco": (convert_refcoco, {"dataset": "refcoco"}),
    "refcoco+": (convert_refcoco, {"dataset": "refcoco+"}),
    "refcocog": (convert_refcoco, {"dataset": "refcocog"}),
}

__all__ = [
    "CONVERTERS",
    "Drops",
    "convert_hcstvg",
    "convert_vidstg",
    "convert_vidstg_tubedetr",
    "convert_charades_sta",
    "convert_didemo",
    "convert_tacos",
    "convert_refcoco",
]
