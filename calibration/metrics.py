"""One-pass tracking accuracy (success AUC, precision) with the pytracking rules, as GRM's paper reports them.

Rules (pytracking ``analysis/extract_results.py``), boxes xywh in pixels:

* IoU with the pixel-inclusive convention (right = x + w - 1; equal to the continuous IoU for these boxes);
* centre = x + (w - 1) / 2, centre error = Euclidean distance in pixels;
* success rate at the 21 IoU thresholds 0, 0.05, ..., 1 with IoU **strictly greater** than the threshold;
  AUC = mean of the 21 rates, reported in percent;
* precision = share of frames with centre error <= 20 px, in percent;
* every frame counts, the first (initialisation) frame included; a frame whose ground truth is missing or
  has non-positive size counts as a failure in both curves (pytracking's ``exclude_invalid_frames=False``);
* over several sequences, each sequence weighs the same (curves averaged, then the AUC taken).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

OVERLAP_THRESHOLDS = np.arange(0.0, 1.0 + 1e-9, 0.05)
PRECISION_PIXELS = 20.0


def valid_boxes(boxes: ArrayLike) -> NDArray[np.bool_]:
    """Rows that are finite with positive width and height."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.all(np.isfinite(b), axis=-1) & (b[..., 2] > 0) & (b[..., 3] > 0)


def overlap(pred: ArrayLike, gt: ArrayLike) -> NDArray[np.float64]:
    """Per-frame IoU of xywh boxes (inclusive pixel convention); -1 where the ground truth is invalid."""
    p, g = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    tl = np.maximum(p[:, :2], g[:, :2])
    br = np.minimum(p[:, :2] + p[:, 2:] - 1.0, g[:, :2] + g[:, 2:] - 1.0)
    inter = np.prod(np.clip(br - tl + 1.0, 0.0, None), axis=1)
    union = np.prod(p[:, 2:], axis=1) + np.prod(g[:, 2:], axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.where(valid_boxes(g) & valid_boxes(p), iou, -1.0)


def centre_error(pred: ArrayLike, gt: ArrayLike) -> NDArray[np.float64]:
    """Per-frame centre distance in pixels; inf where the ground truth is invalid."""
    p, g = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    cp = p[:, :2] + 0.5 * (p[:, 2:] - 1.0)
    cg = g[:, :2] + 0.5 * (g[:, 2:] - 1.0)
    err = np.sqrt(np.sum((cp - cg) ** 2, axis=1))
    return np.where(valid_boxes(g) & valid_boxes(p), err, np.inf)


def success_curve(pred: ArrayLike, gt: ArrayLike) -> NDArray[np.float64]:
    """Share of frames with IoU > t for each t of :data:`OVERLAP_THRESHOLDS`."""
    iou = overlap(pred, gt)
    return np.mean(iou[:, None] > OVERLAP_THRESHOLDS[None, :], axis=0)


def precision_rate(pred: ArrayLike, gt: ArrayLike, pixels: float = PRECISION_PIXELS) -> float:
    """Share of frames with centre error <= ``pixels``."""
    return float(np.mean(centre_error(pred, gt) <= pixels))


def auc_and_precision(preds: Sequence[ArrayLike], gts: Sequence[ArrayLike]) -> tuple[float, float]:
    """(success AUC, precision @ 20 px) in percent over sequences weighted equally."""
    if not preds:
        return float("nan"), float("nan")
    curves = [success_curve(p, g) for p, g in zip(preds, gts, strict=True)]
    auc = float(np.mean(np.mean(curves, axis=0))) * 100.0
    prec = float(np.mean([precision_rate(p, g) for p, g in zip(preds, gts, strict=True)])) * 100.0
    return auc, prec
