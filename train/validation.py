"""Periodic validation: one-pass tracking on held-out sequences in the GOT-10k layout, scored by AUC.

The network runs through the runtime's :class:`~grm.runtime.tracker.Tracker` with the in-memory
:class:`~grm.train.backend.TorchBackend`, i.e. exactly the test-time pipeline. Scoring is the benchmark
code's (:func:`grm.benchmarks.metrics.score_boxes`, pytracking protocol, benchmarks/PROTOCOLS.md): frame 0 is the ground
truth, inclusive-pixel IoU, frames whose target is absent are skipped, AUC = mean of the 21-point success
curve averaged over sequences, in percent.
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

from grm.benchmarks.metrics import score_boxes
from grm.runtime.tracker import Tracker
from grm.train.data.got10k import Got10k

log = logging.getLogger(__name__)


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
    preds, statics, gts, visible = [], [], [], []
    try:
        for seq in range(count):
            info = dataset.sequence_info(seq)
            preds.append(track_sequence(tracker, dataset, seq))
            statics.append(np.repeat(np.asarray(info.boxes[:1], np.float64), len(info), axis=0))
            gts.append(np.asarray(info.boxes, np.float64))
            visible.append(info.visible)
            if progress is not None:
                progress(1)
    finally:
        model.train(was_training)
    return ValidationResult(
        auc=score_boxes(preds, gts, visible=visible).auc,
        static_auc=score_boxes(statics, gts, visible=visible).auc,
        sequences=count,
        frames=sum(len(g) for g in gts),
    )
