"""Several targets through one network: every frame, the K targets' template/search pairs go to the backend
N at a time, N being the model's batch (its metadata): ceil(K/N) calls, the last one padded by repeating a live
pair whose outputs are dropped. A dynamic-batch model takes all K in one call; a batch-1 model takes K calls.

GRM treats each pair on its own, so each target gets the boxes :class:`~grm.runtime.tracker.Tracker` gives it
alone: both use :class:`~grm.runtime.tracker.TargetState` for crops, decoding and state.
Frames are HxWx3 uint8 RGB; boxes are xywh in image pixels; ids count from 1 and are never reused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from grm.runtime import contract
from grm.runtime.backends.base import Backend
from grm.runtime.backends.io_check import fill_rows
from grm.runtime.crop import Crop
from grm.runtime.errors import InputError
from grm.runtime.params import TrackerParams
from grm.runtime.tracker import (
    StageTimes,
    TargetState,
    TemplateInput,
    TrackResult,
    box4,
    check_frame,
    network_inputs,
)


class MultiTracker:
    """Tracks several targets over any :class:`Backend`, batching their network calls.

    Args:
        backend: runs the network; ``backend.metadata.batch`` says how many pairs one call takes (0 = any).
        params: geometry; defaults to the backend's metadata.
        threshold: division threshold of targets added without their own (0 = argmax rule).
    """

    def __init__(self, backend: Backend, params: TrackerParams | None = None, threshold: float = 0.0) -> None:
        self.backend = backend
        self.params = params or backend.metadata.tracker
        self.threshold = float(threshold)
        self.batch = backend.metadata.batch
        self._targets: dict[int, TargetState] = {}
        self._fixed: dict[tuple[int, ...], dict[str, NDArray[np.float32]]] = {}  # see _fixed_feeds
        self._next_id = 1
        self.frame_index = 0

    @property
    def ids(self) -> list[int]:
        """Ids of the targets being tracked, in the order they were added."""
        return list(self._targets)

    @property
    def states(self) -> dict[int, tuple[float, float, float, float]]:
        """Current box (xywh pixels) of every target."""
        return {i: box4(t.box) for i, t in self._targets.items()}

    def calls_for(self, count: int) -> int:
        """Backend calls one frame of ``count`` targets takes: ceil(count / batch), or 1 for a dynamic batch."""
        if count == 0:
            return 0
        return 1 if self.batch == 0 else math.ceil(count / self.batch)

    def initialize(
        self, frame: NDArray[np.uint8], boxes: Sequence[Sequence[float]], thresholds: Sequence[float] | None = None
    ) -> list[int]:
        """Start over on ``frame`` with one target per box (ids 1..K, in order); per-target ``thresholds`` are
        optional. Every box is checked before anything changes; a bad one is named by its place in ``boxes``."""
        check_frame(frame)
        if thresholds is not None and len(thresholds) != len(boxes):
            raise InputError(f"{len(thresholds)} thresholds given for {len(boxes)} boxes; give one per box")
        targets = []
        for index, box in enumerate(boxes):
            threshold = self.threshold if thresholds is None else thresholds[index]
            try:
                targets.append(TargetState(frame, box, self.params, threshold))
            except InputError as e:
                raise InputError(f"box {index + 1} of {len(boxes)}: {e}") from None
        self._targets = dict(enumerate(targets, start=1))
        self._fixed.clear()
        self._next_id = len(targets) + 1
        self.frame_index = 0
        return self.ids

    def add(self, frame: NDArray[np.uint8], box_xywh: Sequence[float], threshold: float | None = None) -> int:
        """Start a new target on ``frame`` (the frame the box was drawn on; tracking starts with the next one)."""
        check_frame(frame)
        target = TargetState(frame, box_xywh, self.params, self.threshold if threshold is None else threshold)
        target_id = self._next_id
        self._targets[target_id] = target
        self._fixed.clear()
        self._next_id += 1
        return target_id

    def remove(self, target_id: int) -> None:
        """Stop tracking a target; an id that is not tracked is an :class:`InputError`."""
        if target_id not in self._targets:
            raise InputError(f"no target with id {target_id} to remove; tracked ids: {self.ids}")
        del self._targets[target_id]
        self._fixed.clear()

    def track(self, frame: NDArray[np.uint8]) -> dict[int, TrackResult]:
        """Locate every target in the next frame; each result's ``times`` are the whole frame's stages."""
        return self.track_each(dict.fromkeys(self._targets, frame))

    def track_each(self, frames: Mapping[int, NDArray[np.uint8]]) -> dict[int, TrackResult]:
        """Locate each named target in its own next frame (targets from different sequences, e.g. benchmark
        slots); targets not named keep their state. Results come in the order of ``frames``.

        Raises:
            InputError: an unknown id, a bad frame, or NaN/inf network output (then no target moves).
        """
        unknown = [i for i in frames if i not in self._targets]
        if unknown:
            raise InputError(f"no target with id {unknown[0]}; tracked ids: {self.ids}")
        for frame in frames.values():
            check_frame(frame)
        self.frame_index += 1
        ids = list(frames)
        t0 = time.perf_counter()
        search = np.empty((len(ids), *contract.input_shapes(self.params)[contract.SEARCH][1:]), dtype=np.float32)
        crops = [self._targets[i].search(frames[i], out=search[k : k + 1]) for k, i in enumerate(ids)]
        t1 = time.perf_counter()
        step = self.batch or max(len(ids), 1)  # a dynamic batch takes every pair at once
        outputs = [self._run(ids[s : s + step], search[s : s + step]) for s in range(0, len(ids), step)]
        t2 = time.perf_counter()
        found = [self._locate(i, outputs[k // step], k % step, crops[k], frames[i]) for k, i in enumerate(ids)]
        for i, (box, _, _) in zip(ids, found, strict=True):
            self._targets[i].box = box
        t3 = time.perf_counter()
        times = StageTimes(preprocess=t1 - t0, inference=t2 - t1, postprocess=t3 - t2)
        return {
            i: TrackResult(box_xywh=box4(box), score=score, times=times, decisions=decisions)
            for i, (box, score, decisions) in zip(ids, found, strict=True)
        }

    def _run(self, ids: list[int], search: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        """One backend call for these targets (at most ``batch``), padded to a static batch by repeating the last."""
        size = self.batch or len(ids)
        return self.backend.run({**self._fixed_feeds(ids, size), contract.SEARCH: _padded(search, size, "search")})

    def _fixed_feeds(self, ids: list[int], size: int) -> dict[str, NDArray[np.float32]]:
        """The feeds of a call that do not change from frame to frame (templates, box masks, thresholds), stacked
        and padded to ``size`` rows once per group of ids; the groups are forgotten when a target comes or goes."""
        key = tuple(ids)
        if key not in self._fixed:
            if len(self._fixed) >= _MAX_GROUPS:  # benchmark slots may form ever new groups
                self._fixed.clear()
            targets = [self._targets[i] for i in ids]
            template = TemplateInput(
                image=np.concatenate([t.template.image for t in targets]),
                box_mask=np.concatenate([t.template.box_mask for t in targets]),
            )
            thresholds = np.array([t.threshold for t in targets], dtype=np.float32)
            feeds = network_inputs(template, search=np.empty(0, dtype=np.float32), threshold=thresholds)
            del feeds[contract.SEARCH]
            self._fixed[key] = {name: _padded(arr, size, name) for name, arr in feeds.items()}
        return self._fixed[key]

    def _locate(
        self, target_id: int, outputs: dict[str, NDArray[np.float32]], row: int, crop: Crop, frame: NDArray[np.uint8]
    ) -> tuple[list[float], float, NDArray[np.int8] | None]:
        label = f"frame {self.frame_index}, target {target_id}"
        return self._targets[target_id].locate(outputs, row, crop, frame.shape, label)


_MAX_GROUPS = 64


def _padded(array: NDArray[np.float32], size: int, name: str) -> NDArray[np.float32]:
    """``array`` with ``size`` rows: itself, or its rows followed by copies of the last (padding of a static batch)."""
    if array.shape[0] == size:
        return array
    out = np.empty((size, *array.shape[1:]), dtype=array.dtype)
    fill_rows(out, array, array.shape[0], name)
    return out
