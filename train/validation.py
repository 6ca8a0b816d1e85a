"""Periodic validation: one-pass tracking on held-out sequences in the GOT-10k layout, scored by AUC.

The network runs through the runtime's :class:`~grm.runtime.tracker.Tracker` with the in-memory
:class:`~grm.train.backend.TorchBackend`, i.e. exactly the test-time pipeline. Scoring follows the
PyTracking convention (spec D.3): frame 0 is the ground truth, IoU uses inclusive pixel corners, frames
whose ground truth is empty or marked absent are skipped, the success curve is the fraction of frames with
IoU > t for t = 0, 0.05, ..., 1 (21 points), averaged over sequences; AUC is its mean x 100.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from grm.runtime.tracker import Tracker
from grm.train.data.got10k import Got10k

log = logging.getLogger(__name__)
THRESHOLDS = np.linspace(0.0, 1.0, 21)


def iou_inclusive(pred: NDArray, gt: NDArray) -> NDArray[np.float64]:
    """IoU of xywh boxes with the toolkit's inclusive pixel corners (x2 = x + w - 1)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    tl = np.maximum(pred[:, :2], gt[:, :2])
    br = np.minimum(pred[:, :2] + pred[:, 2:] - 1, gt[:, :2] + gt[:, 2:] - 1)
    inter = np.prod(np.clip(br - tl + 1, 0, None), axis=1)
    union = np.prod(pred[:, 2:], axis=1) + np.prod(gt[:, 2:], axis=1) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def success_curve(pred: NDArray, gt: NDArray, valid: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Fraction of valid frames with IoU > t for the 21 thresholds (frame 0 taken as ground truth)."""
    pred = np.array(pred, np.float64)
    pred[0] = gt[0]
    iou = iou_inclusive(pred, gt)[valid]
    if iou.size == 0:
        return np.zeros_like(THRESHOLDS)
    return (iou[None, :] > THRESHOLDS[:, None]).mean(axis=1)


def auc(curves: list[NDArray[np.float64]]) -> float:
    """AUC x 100 of the sequence-averaged success curve."""
    return float(np.mean(np.mean(curves, axis=0)) * 100) if curves else 0.0


@dataclass(frozen=True)
class ValidationResult:
    auc: float
    static_auc: float
    sequences: int
    frames: int


def track_sequence(tracker: Tracker, dataset: Got10k, seq: int) -> NDArray[np.float64]:
    """Run the tracker over one sequence from its first box; returns (N, 4) xywh predictions."""
    info = dataset.sequence_info(seq)
    boxes = [np.asarray(info.boxes[0], np.float64)]
    tracker.initialize(dataset.frame(seq, 0), info.boxes[0].tolist())
    for i in range(1, len(info)):
        boxes.append(np.asarray(tracker.track(dataset.frame(seq, i)).box_xywh))
    return np.stack(boxes)


@torch.no_grad()
def validate(
    model: nn.Module,
    root: str | Path,
    max_sequences: int | None = None,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> ValidationResult:
    """AUC of ``model`` on the sequences under ``root`` (and of the static first-box baseline).

    The model is switched to eval mode and back to its previous mode afterwards.
    """
    from grm.train.backend import TorchBackend

    dataset = Got10k(root)
    count = len(dataset) if max_sequences is None else min(max_sequences, len(dataset))
    was_training = model.training
    backend = TorchBackend(model, device=device)
    tracker = Tracker(backend)
    curves, static_curves, frames = [], [], 0
    try:
        for seq in range(count):
            info = dataset.sequence_info(seq)
            valid = info.visible.copy()
            pred = track_sequence(tracker, dataset, seq)
            curves.append(success_curve(pred, info.boxes, valid))
            static_curves.append(success_curve(np.repeat(info.boxes[:1], len(info), axis=0), info.boxes, valid))
            frames += len(info)
            if progress is not None:
                progress(1)
    finally:
        model.train(was_training)
    return ValidationResult(auc=auc(curves), static_auc=auc(static_curves), sequences=count, frames=frames)
