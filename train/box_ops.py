"""Torch twins of :mod:`grm.runtime.geometry` box conversions, for losses that need gradients.

Tested against the numpy versions; use the numpy ones everywhere gradients are not needed.
"""

from __future__ import annotations

import torch
from torch import Tensor


def xywh_to_xyxy(box: Tensor) -> Tensor:
    return torch.cat([box[..., :2], box[..., :2] + box[..., 2:4]], dim=-1)


def cxcywh_to_xyxy(box: Tensor) -> Tensor:
    half = 0.5 * box[..., 2:4]
    return torch.cat([box[..., :2] - half, box[..., :2] + half], dim=-1)


def box_area(box_xyxy: Tensor) -> Tensor:
    return (box_xyxy[..., 2] - box_xyxy[..., 0]) * (box_xyxy[..., 3] - box_xyxy[..., 1])


def iou_and_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Element-wise IoU and union area of two (N, 4) xyxy batches."""
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = box_area(a) + box_area(b) - inter
    return inter / union, union


def generalized_iou(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Element-wise GIoU and IoU of two (N, 4) xyxy batches (boxes must satisfy x2 >= x1, y2 >= y1)."""
    iou, union = iou_and_union(a, b)
    lt = torch.min(a[:, :2], b[:, :2])
    rb = torch.max(a[:, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    hull = wh[:, 0] * wh[:, 1]
    return iou - (hull - union) / hull, iou
