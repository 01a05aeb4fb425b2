import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_st.core import STConfig, combine_losses, space_loss


def test_perfect_boxes_give_zero():
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.3, 0.6, 0.1, 0.1]]])
    terms = space_loss(boxes, boxes.clone(), torch.ones(1, 2, dtype=torch.bool))
    assert terms["loss_l1"].item() == 0.0
    assert abs(terms["loss_giou"].item()) < 1e-4  # eps=1e-7 in the union


def test_hand_computed_giou_and_l1():
    # pred xyxy (0,0,2,2) -> cxcywh (1,1,2,2); target xyxy (1,1,3,3) -> (2,2,2,2) (units cancel in GIoU)
    pred = torch.tensor([[[1.0, 1.0, 2.0, 2.0]]]) / 4
    target = torch.tensor([[[2.0, 2.0, 2.0, 2.0]]]) / 4
    terms = space_loss(pred, target, torch.ones(1, 1, dtype=torch.bool))
    # IoU = 1/7; enclosing area 9; union 7 -> GIoU = 1/7 - 2/9
    giou = 1 / 7 - 2 / 9
    assert abs(terms["loss_giou"].item() - (1 - giou)) < 1e-5
    assert abs(terms["loss_l1"].item() - 0.5) < 1e-6  # |0.25|+|0.25|+0+0


def test_frames_outside_span_contribute_nothing():
    target = torch.rand(2, 5, 4) * 0.5 + 0.25
    pred = target.clone()
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 1:3] = True
    mask[1, 4] = True
    pred[~mask] = torch.rand(int((~mask).sum()), 4)  # garbage outside the span
    pred.requires_grad_(True)
    terms = space_loss(pred, target, mask)
    assert terms["loss_l1"].item() < 1e-6
    (terms["loss_l1"] + terms["loss_giou"]).backward()
    assert pred.grad[~mask].abs().sum() == 0


def test_empty_mask_is_zero_and_connected():
    pred = torch.rand(1, 3, 4, requires_grad=True)
    terms = space_loss(pred, torch.rand(1, 3, 4), torch.zeros(1, 3, dtype=torch.bool))
    total = terms["loss_l1"] + terms["loss_giou"]
    assert total.item() == 0.0
    total.backward()
    assert pred.grad is not None


def test_combine_losses_weights():
    cfg = STConfig(lambda_time=2.0, lambda_space=0.5, lambda_l1=3.0, lambda_giou=1.0)
    total = combine_losses(torch.tensor(1.0), {"loss_l1": torch.tensor(2.0), "loss_giou": torch.tensor(4.0)}, cfg)
    assert total.item() == 2.0 + 0.5 * (6.0 + 4.0)
    assert combine_losses(torch.tensor(1.5), None, cfg).item() == 3.0


unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(unit, unit, unit, unit, unit, unit, unit, unit), min_size=1, max_size=6))
def test_degenerate_boxes_stay_finite(rows):
    """Zero-width/height, identical and disjoint boxes: loss and gradients stay finite."""
    data = torch.tensor(rows, dtype=torch.float32)
    pred = data[:, :4].clone().unsqueeze(0).requires_grad_(True)
    target = data[:, 4:].unsqueeze(0)
    terms = space_loss(pred, target, torch.ones(1, len(rows), dtype=torch.bool))
    total = terms["loss_l1"] + terms["loss_giou"]
    assert torch.isfinite(total)
    total.backward()
    assert torch.isfinite(pred.grad).all()
