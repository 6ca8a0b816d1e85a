from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grm.runtime import geometry
from grm.train.box_ops import cxcywh_to_xyxy, generalized_iou, xywh_to_xyxy
from grm.train.losses import LossError, focal_loss, giou_loss, tracking_loss


def test_box_twins_match_the_numpy_geometry():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0.1, 1.0, (16, 4))
    np.testing.assert_allclose(xywh_to_xyxy(torch.from_numpy(boxes)).numpy(), geometry.xywh_to_xyxy(boxes))
    corners = geometry.xywh_to_xyxy(geometry.cxcywh_to_xywh(boxes))
    np.testing.assert_allclose(cxcywh_to_xyxy(torch.from_numpy(boxes)).numpy(), corners)
    a, b = boxes[:8], boxes[8:]
    _, iou = generalized_iou(xywh_to_xyxy(torch.from_numpy(a)), xywh_to_xyxy(torch.from_numpy(b)))
    np.testing.assert_allclose(iou.numpy(), geometry.iou_xywh(a, b), atol=1e-12)


def test_giou_of_disjoint_boxes_by_hand():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0, 3.0, 1.0]])
    giou, iou = generalized_iou(a, b)
    assert iou.item() == 0.0 and giou.item() == pytest.approx(0 - (3 - 2) / 3)  # union 2, hull 3
    loss, _ = giou_loss(a, a)
    assert loss.item() == 0.0


def test_inverted_box_is_an_error_not_a_zero_loss():
    good = torch.tensor([[0.1, 0.1, 0.5, 0.5]])
    with pytest.raises(LossError, match="x2 < x1"):
        giou_loss(torch.tensor([[0.5, 0.1, 0.1, 0.5]]), good)


def test_focal_loss_by_hand():
    target = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
    pred = torch.tensor([[[[0.8, 0.3], [0.1, 0.2]]]])
    pos = math.log(0.8) * 0.2**2
    neg = math.log(0.7) * 0.3**2 * 0.5**4 + math.log(0.9) * 0.1**2 + math.log(0.8) * 0.2**2
    assert math.isclose(focal_loss(pred, target).item(), -(pos + neg), rel_tol=1e-5)
    no_peak = torch.zeros_like(target)
    assert math.isclose(
        focal_loss(pred, no_peak).item(),
        -(math.log(0.2) * 0.64 + math.log(0.7) * 0.09 + math.log(0.9) * 0.01 + math.log(0.8) * 0.04),
        rel_tol=1e-5,
    )


def test_total_loss_weights_and_clamped_ground_truth():
    pred = torch.tensor([[[0.5, 0.5, 0.2, 0.2]]], requires_grad=True)
    gt = torch.tensor([[0.4, 0.4, 0.2, 0.2]])
    heat = torch.zeros(1, 4, 4)
    heat[0, 2, 2] = 1.0
    score = torch.full((1, 1, 4, 4), 0.1)
    total, stats = tracking_loss(pred, score, gt, heat)
    assert math.isclose(stats["loss"], stats["focal"] + 2 * stats["giou"] + 5 * stats["l1"], rel_tol=1e-6)
    assert stats["l1"] == pytest.approx(0.0, abs=1e-7) and stats["iou"] == pytest.approx(1.0)
    total.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    _, outside = tracking_loss(pred.detach(), score, torch.tensor([[0.9, 0.9, 0.4, 0.4]]), heat)
    # gt xyxy (0.9, 0.9, 1.3, 1.3) is clamped to (0.9, 0.9, 1, 1); pred xyxy is (0.4, 0.4, 0.6, 0.6)
    assert outside["l1"] == pytest.approx((0.5 + 0.5 + 0.4 + 0.4) / 4)
    with pytest.raises(LossError, match="NaN"):
        tracking_loss(torch.full((1, 1, 4), float("nan")), score, gt, heat)
