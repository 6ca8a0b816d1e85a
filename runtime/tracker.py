"""The GRM tracking loop: crop -> backend -> Hann-weighted decode -> map back -> clip.

Frames are HxWx3 uint8 **RGB**; boxes are xywh in image pixels.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from grm.runtime import contract
from grm.runtime.backends.base import Backend
from grm.runtime.crop import Crop, normalize, sample_target
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


@dataclass(frozen=True)
class TemplateInput:
    """The template side of every network call, cut once on the first frame.

    Attributes:
        image: normalised template crop (1, 3, T, T) float32; (B, 3, T, T) for B pairs of one batched call.
        box_mask: (1, Nz) float32, 1 on the template cells the init box covers (read by roimax/roiavg models);
            (B, Nz) for B pairs.
    """

    image: NDArray[np.float32]
    box_mask: NDArray[np.float32]


def template_input(frame: NDArray[np.uint8], box_xywh: Sequence[float], params: TrackerParams) -> TemplateInput:
    """The template input :meth:`Tracker.initialize` builds: a crop around ``box_xywh`` (xywh pixels, RGB frame)."""
    crop = sample_target(frame, box_xywh, params.template_factor, params.template_size)
    box_in_crop = box_to_crop_xywh(box_xywh, box_xywh, crop.resize_factor, params.template_size, normalize=True)
    box_mask = template_box_mask(box_in_crop, params.template_feat_size)[None]
    return TemplateInput(normalize(crop.image, params.mean, params.std), box_mask)


def search_input(
    frame: NDArray[np.uint8], box_xywh: Sequence[float], params: TrackerParams, out: NDArray[np.float32] | None = None
) -> tuple[NDArray[np.float32], Crop]:
    """The search input :meth:`Tracker.track` builds around the previous box (xywh pixels): the normalised crop
    (1, 3, S, S) float32, written into ``out`` when given, and the crop (its resize factor maps the box back)."""
    crop = sample_target(frame, box_xywh, params.search_factor, params.search_size)
    return normalize(crop.image, params.mean, params.std, out=out), crop


def network_inputs(
    template: TemplateInput, search: NDArray[np.float32], threshold: NDArray[np.float32]
) -> dict[str, NDArray[np.float32]]:
    """One network call's feeds in contract names; ``threshold`` is the [B] float32 division threshold, one per
    template/search pair (B = 1 for one target)."""
    return {
        contract.TEMPLATE: template.image,
        contract.SEARCH: search,
        contract.THRESHOLD: threshold,
        contract.TEMPLATE_MASK: template.box_mask,
    }


class TargetState:
    """What one target carries from frame to frame: the template input cut once on its first frame, its division
    threshold, and its previous box (xywh pixels; the next search crop is centred on it).

    :class:`Tracker` holds one, :class:`grm.runtime.multi.MultiTracker` one per target; both cut crops with
    :meth:`search` and decode their row of a network call with :meth:`locate`.
    """

    def __init__(
        self, frame: NDArray[np.uint8], box_xywh: Sequence[float], params: TrackerParams, threshold: float = 0.0
    ) -> None:
        """Check ``box_xywh`` against the (HxWx3 RGB) frame and cut the template around it."""
        self.params = params
        self.box = validate_init_box(box_xywh, frame.shape[0], frame.shape[1])
        self.template = template_input(frame, self.box, params)
        self.threshold = float(threshold)

    def search(self, frame: NDArray[np.uint8], out: NDArray[np.float32] | None = None) -> Crop:
        """Cut the search crop around the previous box into ``out`` ((1, 3, S, S) float32, e.g. one row of a
        batch); returns the crop, whose resize factor :meth:`locate` needs."""
        return search_input(frame, self.box, self.params, out=out)[1]

    def locate(
        self, outputs: Mapping[str, NDArray[Any]], row: int, crop: Crop, frame_shape: Sequence[int], label: str
    ) -> tuple[list[float], float, NDArray[np.int8] | None]:
        """Decode row ``row`` of a network call's outputs into the new box (xywh pixels, not yet the state).

        Hann-weighted peak of the score map, its size and offset, mapped from the search crop back to the
        image around the previous box and clipped to the image with a 10 px margin. Returns the box, the
        peak score and the row's (depth-1, Nx) int8 division decisions (None when the model lacks them).

        Raises:
            InputError: NaN or infinity in this row of an output; the message starts with ``label``.
        """
        p = self.params
        maps = [np.asarray(outputs[k], dtype=np.float32) for k in contract.OUTPUT_NAMES]
        score_map, size_map, offset_map = (m.reshape(-1, *m.shape[-3:])[row] for m in maps)
        for name, arr in zip(contract.OUTPUT_NAMES, (score_map, size_map, offset_map), strict=True):
            if not np.all(np.isfinite(arr)):
                raise InputError(f"{label}: network output {name} contains NaN or infinity")
        response = hann2d(p.feat_size) * score_map[0]
        box_norm, score = decode_box(response, size_map, offset_map)
        box_crop = box_norm * np.float32(p.search_size) / np.float32(crop.resize_factor)
        box = map_box_back(box_crop.tolist(), self.box, p.search_size, crop.resize_factor)
        box = clip_box(box, frame_shape[0], frame_shape[1], margin=10)
        raw = outputs.get(contract.DECISIONS)
        decisions = None if raw is None else np.asarray(raw).reshape(-1, *raw.shape[-2:])[row].astype(np.int8)
        return box, score, decisions


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
        self._threshold_arr = np.array([self.threshold], dtype=np.float32)
        self._search = np.empty(contract.input_shapes(self.params)[contract.SEARCH], dtype=np.float32)
        self._target: TargetState | None = None
        self.frame_index = 0

    @property
    def state(self) -> tuple[float, float, float, float] | None:
        """Current box (xywh pixels), or None before :meth:`initialize`."""
        return None if self._target is None else box4(self._target.box)

    def initialize(self, frame: NDArray[np.uint8], box_xywh: Sequence[float]) -> None:
        """Cut the template around ``box_xywh`` on the first frame; the template is never updated."""
        check_frame(frame)
        self._target = TargetState(frame, box_xywh, self.params, self.threshold)
        self.frame_index = 0

    def track(self, frame: NDArray[np.uint8]) -> TrackResult:
        """Locate the target in the next frame; raises :class:`InputError` on NaN/inf network output."""
        target = self._target
        if target is None:
            raise InputError("Tracker.track called before initialize")
        check_frame(frame)
        self.frame_index += 1
        t0 = time.perf_counter()
        crop = target.search(frame, out=self._search)
        t1 = time.perf_counter()
        outputs = self.backend.run(network_inputs(target.template, self._search, self._threshold_arr))
        t2 = time.perf_counter()
        box, score, decisions = target.locate(outputs, 0, crop, frame.shape, f"frame {self.frame_index}")
        target.box = box
        t3 = time.perf_counter()
        times = StageTimes(preprocess=t1 - t0, inference=t2 - t1, postprocess=t3 - t2)
        return TrackResult(box_xywh=box4(box), score=score, times=times, decisions=decisions)


def box4(box: Sequence[float]) -> tuple[float, float, float, float]:
    """A 4-sequence box as the (x, y, w, h) tuple results carry."""
    x, y, w, h = box
    return (x, y, w, h)


def check_frame(frame: NDArray[np.uint8]) -> None:
    """Refuse anything but a non-empty HxWx3 image with :class:`InputError`."""
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.size == 0:
        shape = getattr(frame, "shape", None)
        raise InputError(f"frame must be an HxWx3 uint8 RGB image; got shape {shape}")
