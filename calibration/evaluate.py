"""Track held-out sequences with the FP32 and the INT8 model and compare them frame by frame.

Two passes per sequence:

1. *same input*: the FP32 tracker drives; every network call is also run by the INT8 model on the very same
   crops, giving per-layer division-decision agreement, output-map errors and the IoU of the two decoded boxes
   (Hann-weighted decode, normalised search-crop coordinates), free of trajectory drift;
2. *trajectory*: the INT8 model tracks alone, as deployed; its boxes are compared with the FP32 boxes (IoU per
   frame) and with the ground truth (AUC / precision, see :mod:`grm.calibration.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from grm.calibration.sequences import TrackSequence
from grm.runtime import contract
from grm.runtime.backends.base import Backend
from grm.runtime.decode import decode_box, hann2d
from grm.runtime.geometry import cxcywh_to_xywh, iou_xywh
from grm.runtime.params import ModelMetadata
from grm.runtime.tracker import Tracker

Progress = Callable[[int, int], None]


@dataclass
class FrameComparison:
    """Accumulates the same-input comparison of the two models over one sequence."""

    box_iou: list[float] = field(default_factory=list)
    agreement: list[NDArray[np.float64]] = field(default_factory=list)
    max_abs: dict[str, float] = field(default_factory=dict)
    sum_abs: dict[str, float] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)

    def add(self, ref: Mapping[str, NDArray[np.float32]], test: Mapping[str, NDArray[np.float32]], feat: int) -> None:
        for name in contract.OUTPUT_NAMES:
            diff = np.abs(ref[name].astype(np.float64) - test[name].astype(np.float64))
            self.max_abs[name] = max(self.max_abs.get(name, 0.0), float(diff.max()))
            self.sum_abs[name] = self.sum_abs.get(name, 0.0) + float(diff.sum())
            self.count[name] = self.count.get(name, 0) + diff.size
        boxes = [decoded_box(out, feat) for out in (ref, test)]
        self.box_iou.append(float(iou_xywh(cxcywh_to_xywh(boxes[0]), cxcywh_to_xywh(boxes[1]))))
        if contract.DECISIONS in ref and contract.DECISIONS in test:
            a = np.asarray(ref[contract.DECISIONS]).reshape(ref[contract.DECISIONS].shape[-2:])
            b = np.asarray(test[contract.DECISIONS]).reshape(a.shape)
            self.agreement.append(np.mean(a == b, axis=1))

    def mean_abs(self) -> dict[str, float]:
        return {k: self.sum_abs[k] / self.count[k] for k in self.sum_abs}


def decoded_box(outputs: Mapping[str, NDArray[np.float32]], feat: int) -> NDArray[np.float32]:
    """The tracker's decode (Hann-weighted score peak) as normalised cx, cy, w, h in the search crop."""
    score = np.asarray(outputs[contract.SCORE_MAP], dtype=np.float32).reshape(feat, feat)
    size = np.asarray(outputs[contract.SIZE_MAP], dtype=np.float32).reshape(2, feat, feat)
    offset = np.asarray(outputs[contract.OFFSET_MAP], dtype=np.float32).reshape(2, feat, feat)
    box, _ = decode_box(hann2d(feat) * score, size, offset)
    return box


class ShadowBackend:
    """Runs ``ref`` for the tracker and ``test`` on the same inputs, comparing the outputs."""

    def __init__(self, ref: Backend, test: Backend) -> None:
        self.ref, self.test = ref, test
        self.metadata: ModelMetadata = ref.metadata
        self.name = f"shadow[{ref.name} vs {test.name}]"
        self.comparison = FrameComparison()
        self._feat = ref.metadata.tracker.feat_size

    def run(self, inputs: Mapping[str, NDArray[np.float32]]) -> dict[str, NDArray[np.float32]]:
        ref_out = self.ref.run(inputs)
        self.comparison.add(ref_out, self.test.run(inputs), self._feat)
        return ref_out

    def close(self) -> None:
        """The wrapped backends belong to the caller."""


@dataclass(frozen=True)
class SequenceComparison:
    """FP32 vs INT8 on one sequence; boxes (n, 4) xywh pixels, row 0 = initial box.

    Attributes:
        same_input: the comparison on identical crops (pass 1).
        gt: ground truth rows for the tracked frames, or None when the sequence has none beyond frame 0.
    """

    name: str
    fp32_boxes: NDArray[np.float64]
    int8_boxes: NDArray[np.float64]
    same_input: FrameComparison
    gt: NDArray[np.float64] | None

    @property
    def trajectory_iou(self) -> NDArray[np.float64]:
        """Per tracked frame (initial frame excluded): IoU of the INT8 box with the FP32 box."""
        return iou_xywh(self.int8_boxes[1:], self.fp32_boxes[1:])

    @property
    def agreement(self) -> NDArray[np.float64] | None:
        """(frames, depth-1) share of search tokens with the same division decision, or None."""
        return np.stack(self.same_input.agreement) if self.same_input.agreement else None


def _track(backend: Backend, seq: TrackSequence, threshold: float, limit: int, progress: Progress | None) -> NDArray:
    tracker = Tracker(backend, threshold=threshold)
    boxes = []
    for index, frame in seq.frames(limit=limit):
        if index == 0:
            tracker.initialize(frame, seq.boxes[0])
            boxes.append(tracker.state)
        else:
            boxes.append(tracker.track(frame).box_xywh)
        if progress is not None:
            progress(1, 2 * limit)
    return np.asarray(boxes, dtype=np.float64)


def compare_on_sequence(
    fp32: Backend,
    int8: Backend,
    seq: TrackSequence,
    threshold: float,
    max_frames: int | None = None,
    progress: Progress | None = None,
) -> SequenceComparison:
    """Both passes on one sequence (the first ``max_frames`` frames)."""
    limit = min(seq.num_frames, max_frames or seq.num_frames)
    shadow = ShadowBackend(fp32, int8)
    fp32_boxes = _track(shadow, seq, threshold, limit, progress)
    int8_boxes = _track(int8, seq, threshold, limit, progress)
    n = len(fp32_boxes)
    gt = seq.boxes[:n] if len(seq.boxes) >= n and n > 1 else None
    return SequenceComparison(seq.name, fp32_boxes, int8_boxes, shadow.comparison, gt)
