"""The GRM training objective (docs/training.md, losses): 1 x focal + 2 x GIoU + 5 x L1.

Boxes: predictions are normalised cxcywh (``pred_boxes``), ground truth normalised x1y1wh of the search
crop, clamped to [0, 1] after conversion to xyxy. A malformed box (x2 < x1) or a NaN prediction raises
:class:`LossError` instead of silently zeroing the loss as the official code does on GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from grm.train.box_ops import cxcywh_to_xyxy, generalized_iou, xywh_to_xyxy


class LossError(RuntimeError):
    """The loss cannot be computed: NaN network output or an inverted box. Training must stop."""


@dataclass(frozen=True)
class LossWeights:
    focal: float = 1.0
    giou: float = 2.0
    l1: float = 5.0


def focal_loss(pred: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CenterNet focal loss summed over the batch and divided by the number of peak cells (target == 1).

    ``pred`` and ``target`` are (B, 1, F, F) (or any equal shapes), pred in (0, 1).
    """
    pos = target.eq(1).float()
    neg = target.lt(1).float()
    neg_weight = torch.pow(1 - target, beta)
    pred = torch.clamp(pred, min=1e-12)
    pos_loss = (torch.log(pred) * torch.pow(1 - pred, alpha) * pos).sum()
    neg_loss = (torch.log(1 - pred) * torch.pow(pred, alpha) * neg_weight * neg).sum()
    num_pos = pos.sum()
    if num_pos == 0:
        return -neg_loss
    return -(pos_loss + neg_loss) / num_pos


def giou_loss(pred_xyxy: Tensor, gt_xyxy: Tensor) -> tuple[Tensor, Tensor]:
    """mean(1 - GIoU) and the per-box IoU; raises :class:`LossError` on inverted boxes."""
    for name, box in (("predicted", pred_xyxy), ("ground-truth", gt_xyxy)):
        if not bool((box[:, 2:] >= box[:, :2]).all()):
            raise LossError(f"{name} box with x2 < x1 or y2 < y1 in the GIoU loss: {box.detach().cpu().tolist()[:4]}")
    giou, iou = generalized_iou(pred_xyxy, gt_xyxy)
    return (1 - giou).mean(), iou


def tracking_loss(
    pred_boxes: Tensor, score_map: Tensor, gt_box_xywh: Tensor, gt_heatmap: Tensor, weights: LossWeights = LossWeights()
) -> tuple[Tensor, dict[str, float]]:
    """Total loss and its parts for one batch.

    Args:
        pred_boxes: (B, 1, 4) normalised cxcywh.
        score_map: (B, 1, F, F) predicted centre scores.
        gt_box_xywh: (B, 4) normalised x1y1wh of the search crop.
        gt_heatmap: (B, F, F) Gaussian label.
    Returns:
        The weighted total and a dict of floats (loss, giou, l1, focal, iou) for logging.
    """
    if torch.isnan(pred_boxes).any():
        raise LossError("the network output NaN boxes; lower the learning rate or check the inputs")
    pred = cxcywh_to_xyxy(pred_boxes.float()).reshape(-1, 4)
    gt = xywh_to_xyxy(gt_box_xywh.float()).reshape(-1, 4).clamp(0.0, 1.0)
    g_loss, iou = giou_loss(pred, gt)
    l1 = torch.nn.functional.l1_loss(pred, gt)
    focal = focal_loss(score_map.float(), gt_heatmap.unsqueeze(1).float())
    total = weights.giou * g_loss + weights.l1 * l1 + weights.focal * focal
    stats = {
        "loss": float(total.detach()),
        "giou": float(g_loss.detach()),
        "l1": float(l1.detach()),
        "focal": float(focal.detach()),
        "iou": float(iou.detach().mean()),
    }
    return total, stats
