"""Turn a (template frame, search frame) pair into network inputs and labels (docs/training.md, processing).

Steps, in the official order: joint grayscale (p=0.05) and horizontal flip (p=0.5) of the full frames;
per-image box jitter; crop with :func:`grm.runtime.crop.sample_target` around the jittered box; map the
true box into the crop with :func:`grm.runtime.geometry.box_to_crop_xywh` (normalised x1y1wh); per-crop
brightness U(0.8, 1.2) and an independent horizontal flip; ImageNet normalisation; validity checks on the
padding mask. Boxes are xywh in pixels unless named ``norm``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.runtime.crop import sample_target
from grm.runtime.geometry import box_to_crop_xywh
from grm.runtime.params import TrackerParams
from grm.train.config import CropJitter, GrmConfig
from grm.train.data.label import heatmap

BRIGHTNESS_JITTER = 0.2
FLIP_PROBABILITY = 0.5


class InvalidSample(Exception):  # noqa: N818 - a control-flow signal, not an error for users
    """The drawn pair cannot be used (degenerate crop or a crop that is all padding); draw another."""


@dataclass(frozen=True)
class CropSpec:
    """How one input is cut: crop factor, jitter and output side in pixels."""

    factor: float
    center_jitter: float
    scale_jitter: float
    size: int


@dataclass(frozen=True)
class Processing:
    """Processing parameters of one config (template and search crops, patch stride, normalisation)."""

    template: CropSpec
    search: CropSpec
    stride: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    grayscale_probability: float = 0.05

    @classmethod
    def from_config(cls, config: GrmConfig) -> Processing:
        t: TrackerParams = config.tracker
        tr = config.train

        def spec(j: CropJitter, size: int) -> CropSpec:
            return CropSpec(j.factor, j.center_jitter, j.scale_jitter, size)

        return cls(
            template=spec(tr.template, t.template_size),
            search=spec(tr.search, t.search_size),
            stride=t.patch_size,
            mean=t.mean,
            std=t.std,
            grayscale_probability=tr.grayscale_probability,
        )

    @property
    def feat_size(self) -> int:
        return self.search.size // self.stride


def joint_transform(
    frames: list[NDArray[np.uint8]], boxes: list[NDArray], grayscale: bool, flip: bool
) -> tuple[list[NDArray[np.uint8]], list[NDArray]]:
    """Grayscale (replicated to 3 channels) then horizontal mirror, applied alike to every full frame."""
    out_frames, out_boxes = [], []
    for frame, box in zip(frames, boxes, strict=True):
        if grayscale:
            frame = np.repeat(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        if flip:
            frame = np.ascontiguousarray(frame[:, ::-1])
            box = flip_box_pixels(box, frame.shape[1])
        out_frames.append(frame)
        out_boxes.append(np.asarray(box, dtype=np.float64))
    return out_frames, out_boxes


def flip_box_pixels(box_xywh: NDArray, width: int) -> NDArray:
    """Mirror an xywh box horizontally in an image of ``width`` pixels: corners x -> (W - 1) - x."""
    x, y, w, h = (float(v) for v in box_xywh)
    xs = ((width - 1) - x, (width - 1) - (x + w))
    return np.array([min(xs), y, max(xs) - min(xs), h])


def jitter_box(box_xywh: NDArray, spec: CropSpec, rng: np.random.Generator) -> NDArray:
    """Scale by exp(N(0,1)*scale_jitter) per side and shift the centre by sqrt(w'h')*center_jitter*(U-0.5)."""
    box = np.asarray(box_xywh, dtype=np.float64)
    wh = box[2:4] * np.exp(rng.standard_normal(2) * spec.scale_jitter)
    max_offset = math.sqrt(float(wh[0] * wh[1])) * spec.center_jitter
    centre = box[:2] + 0.5 * box[2:4] + max_offset * (rng.random(2) - 0.5)
    return np.concatenate([centre - 0.5 * wh, wh])


def nearest_downsample(mask: NDArray[np.bool_], size: int) -> NDArray[np.bool_]:
    """Nearest-neighbour resize (torch ``F.interpolate`` default): source index floor(i * in / out)."""
    rows = np.floor(np.arange(size) * (mask.shape[0] / size)).astype(np.int64)
    cols = np.floor(np.arange(size) * (mask.shape[1] / size)).astype(np.int64)
    return mask[np.ix_(rows, cols)]


def crop_input(
    frame: NDArray[np.uint8], box: NDArray, spec: CropSpec, stride: int, rng: np.random.Generator
) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """Jitter, crop and map the box; returns the crop (uint8) and the box as normalised x1y1wh."""
    jittered = jitter_box(box, spec, rng)
    if math.ceil(math.sqrt(max(float(jittered[2] * jittered[3]), 0.0)) * spec.factor) < 1:
        raise InvalidSample("jittered box gives a crop smaller than one pixel")
    crop = sample_target(frame, jittered, spec.factor, spec.size, with_mask=True)
    mask = crop.pad_mask
    if mask is None or mask.all() or nearest_downsample(mask, spec.size // stride).all():
        raise InvalidSample("crop lies entirely in the padding")
    box_norm = box_to_crop_xywh(box, jittered, crop.resize_factor, spec.size, normalize=True)
    return crop.image, box_norm


def finish_crop(
    crop: NDArray[np.uint8], box_norm: NDArray, processing: Processing, rng: np.random.Generator
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Brightness U(0.8,1.2) clamped to [0,1], horizontal flip p=0.5 (x -> 1 - x), normalisation.

    Returns the CHW float32 image and the (possibly mirrored) normalised x1y1wh box as float32.
    """
    factor = rng.uniform(1 - BRIGHTNESS_JITTER, 1 + BRIGHTNESS_JITTER)
    img = np.clip(crop.astype(np.float32) * np.float32(factor / 255.0), 0.0, 1.0).transpose(2, 0, 1)
    box = np.asarray(box_norm, dtype=np.float64)
    if rng.random() < FLIP_PROBABILITY:
        img = img[:, :, ::-1]
        box = np.array([1 - (box[0] + box[2]), box[1], box[2], box[3]])
    mean = np.asarray(processing.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(processing.std, dtype=np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray((img - mean) / std, dtype=np.float32), box.astype(np.float32)


def process_pair(
    processing: Processing,
    template_frame: NDArray[np.uint8],
    template_box: NDArray,
    search_frame: NDArray[np.uint8],
    search_box: NDArray,
    rng: np.random.Generator,
) -> dict[str, NDArray[np.float32]]:
    """Full processing of one sample; raises :class:`InvalidSample` when the pair must be redrawn.

    Returns ``template`` (3,T,T), ``search`` (3,S,S), ``template_anno`` / ``search_anno`` (4,) normalised
    x1y1wh, and ``heatmap`` (F,F).
    """
    grayscale = rng.random() < processing.grayscale_probability
    flip = rng.random() < FLIP_PROBABILITY
    (t_frame, s_frame), (t_box, s_box) = joint_transform(
        [template_frame, search_frame], [template_box, search_box], grayscale, flip
    )
    out: dict[str, NDArray[np.float32]] = {}
    for key, frame, box, spec in (
        ("template", t_frame, t_box, processing.template),
        ("search", s_frame, s_box, processing.search),
    ):
        crop, box_norm = crop_input(frame, box, spec, processing.stride, rng)
        out[key], out[f"{key}_anno"] = finish_crop(crop, box_norm, processing, rng)
    out["heatmap"] = heatmap(out["search_anno"], processing.feat_size)
    return out
