"""The GRM tracking loop: crop -> backend -> Hann-weighted decode -> map back -> clip.

Frames are HxWx3 uint8 **RGB**; boxes are xywh in image pixels.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from grm.runtime import contract
from grm.runtime.backends.base import Backend
from grm.runtime.crop import normalize, sample_target
from grm.runtime.decode import decode_box, hann2d
from grm.runtime.errors import InputError
from grm.runtime.geometry import box_to_crop_xywh, clip_box, map_box_back, template_box_mask, validate_init_box
from grm.runtime.params import TrackerParams


@dataclass(frozen=True)
class StageTimes:
    """Wall-clock seconds spent per stage of one frame."""

    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0

    @property
    def total(self) -> float:
        return self.preprocess + self.inference + self.postprocess


@dataclass(frozen=True)
class TrackResult:
    """One tracked frame.

    Attributes:
        box_xywh: the new target box in image pixels (also the tracker's next state).
        score: peak of the Hann-weighted score map, in [0, 1); low values suggest the target is lost.
        times: per-stage timing of this frame.
        decisions: (depth-1, Nx) int8 division decisions when the model exports them, else None.
    """

    box_xywh: tuple[float, float, float, float]
    score: float
    times: StageTimes
    decisions: NDArray[np.int8] | None = None


class Tracker:
    """Single-target tracker over any :class:`Backend`.

    Args:
        backend: runs the network.
        params: geometry; defaults to the backend's metadata.
        threshold: division threshold passed to the network (0 = argmax rule).
    """

    def __init__(self, backend: Backend, params: TrackerParams | None = None, threshold: float = 0.0) -> None:
        self.backend = backend
        self.params = params or backend.metadata.tracker
        self.threshold = float(threshold)
        self._window = hann2d(self.params.feat_size)
        self._threshold_arr = np.array([self.threshold], dtype=np.float32)
        self._search = np.empty(contract.input_shapes(self.params)[contract.SEARCH], dtype=np.float32)
        self._template: NDArray[np.float32] | None = None
        self._template_mask: NDArray[np.float32] | None = None
        self._state: list[float] | None = None
        self.frame_index = 0

    @property
    def state(self) -> tuple[float, float, float, float] | None:
        """Current box (xywh pixels), or None before :meth:`initialize`."""
        return None if self._state is None else tuple(self._state)  # type: ignore[return-value]

    def initialize(self, frame: NDArray[np.uint8], box_xywh: Sequence[float]) -> None:
        """Cut the template around ``box_xywh`` on the first frame; the template is never updated."""
        _check_frame(frame)
        box = validate_init_box(box_xywh, frame.shape[0], frame.shape[1])
        p = self.params
        crop = sample_target(frame, box, p.template_factor, p.template_size)
        self._template = normalize(crop.image, p.mean, p.std)
        box_in_crop = box_to_crop_xywh(box, box, crop.resize_factor, p.template_size, normalize=True)
        self._template_mask = template_box_mask(box_in_crop, p.template_feat_size)[None]
        self._state = box
        self.frame_index = 0

    def track(self, frame: NDArray[np.uint8]) -> TrackResult:
        """Locate the target in the next frame; raises :class:`InputError` on NaN/inf network output."""
        if self._template is None or self._state is None:
            raise InputError("Tracker.track called before initialize")
        _check_frame(frame)
        p = self.params
        self.frame_index += 1
        t0 = time.perf_counter()
        crop = sample_target(frame, self._state, p.search_factor, p.search_size)
        normalize(crop.image, p.mean, p.std, out=self._search)
        t1 = time.perf_counter()
        outputs = self.backend.run(
            {contract.TEMPLATE: self._template, contract.SEARCH: self._search, contract.THRESHOLD: self._threshold_arr,
             contract.TEMPLATE_MASK: self._template_mask}
        )
        t2 = time.perf_counter()
        box, score, decisions = self._decode(outputs, crop.resize_factor, frame.shape[0], frame.shape[1])
        self._state = box
        t3 = time.perf_counter()
        times = StageTimes(preprocess=t1 - t0, inference=t2 - t1, postprocess=t3 - t2)
        return TrackResult(box_xywh=tuple(box), score=score, times=times, decisions=decisions)  # type: ignore[arg-type]

    def _decode(
        self, outputs: dict[str, NDArray[np.float32]], resize_factor: float, height: int, width: int
    ) -> tuple[list[float], float, NDArray[np.int8] | None]:
        p = self.params
        maps = [np.asarray(outputs[k], dtype=np.float32) for k in contract.OUTPUT_NAMES]
        for name, arr in zip(contract.OUTPUT_NAMES, maps, strict=True):
            if not np.all(np.isfinite(arr)):
                raise InputError(f"frame {self.frame_index}: network output {name} contains NaN or infinity")
        score_map, size_map, offset_map = (m.reshape(m.shape[-3:]) for m in maps)
        response = self._window * score_map[0]
        box_norm, score = decode_box(response, size_map, offset_map)
        box_crop = box_norm * np.float32(p.search_size) / np.float32(resize_factor)
        box = map_box_back(box_crop.tolist(), self._state, p.search_size, resize_factor)  # type: ignore[arg-type]
        box = clip_box(box, height, width, margin=10)
        decisions = outputs.get(contract.DECISIONS)
        if decisions is not None:
            decisions = np.asarray(decisions).reshape(decisions.shape[-2:]).astype(np.int8)
        return box, score, decisions


def _check_frame(frame: NDArray[np.uint8]) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.size == 0:
        shape = getattr(frame, "shape", None)
        raise InputError(f"frame must be an HxWx3 uint8 RGB image; got shape {shape}")
