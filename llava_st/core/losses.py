"""Training objective (paper eq. 5-6).

`space_loss` returns the raw terms; `combine_losses` applies every weight in one place.
"""

from typing import Dict, Optional

import torch
from torchvision.ops import generalized_box_iou_loss

from .boxes import cxcywh_to_xyxy
from .config import STConfig

# The unweighted terms of eq. 5-6 as both hosts' model outputs name them: the text (time) loss, L1, GIoU.
LOSS_TERMS = ("loss_text", "loss_l1", "loss_giou")


def space_loss(pred_cxcywh: torch.Tensor, target_cxcywh: torch.Tensor, mask: torch.Tensor) -> Dict[str, torch.Tensor]:
    """L1 and GIoU loss over the frames inside the ground-truth span.

    pred_cxcywh, target_cxcywh: [B, F, 4] normalised cxcywh. mask: [B, F] bool, True for frames inside
    the span that carry a target box. L1 sums the 4 coordinates per box (DETR's convention); both terms
    are means over masked boxes. With no masked box both terms are 0 and still connected to the graph.
    Degenerate (zero-area) boxes give finite values and gradients.
    """
    mask = mask.bool()
    pred = pred_cxcywh[mask].float()  # [N, 4]
    target = target_cxcywh[mask].float()
    if pred.shape[0] == 0:
        zero = pred_cxcywh.sum() * 0.0
        return {"loss_l1": zero, "loss_giou": zero}
    l1 = (pred - target).abs().sum(-1).mean()
    giou = generalized_box_iou_loss(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(target), reduction="mean", eps=1e-7)
    return {"loss_l1": l1, "loss_giou": giou}


def combine_losses(lm_loss: Optional[torch.Tensor], space: Optional[Dict[str, torch.Tensor]], config: STConfig) -> torch.Tensor:
    """L = λ_time·L_text + λ_space·(λ_L1·L1 + λ_giou·L_giou). Either part may be None."""
    total = None
    if lm_loss is not None:
        total = config.lambda_time * lm_loss
    if space is not None:
        s = config.lambda_space * (config.lambda_l1 * space["loss_l1"] + config.lambda_giou * space["loss_giou"])
        total = s if total is None else total + s
    if total is None:
        raise ValueError("combine_losses needs an LM loss or space terms")
    return total
