"""Template/search crop pairs for parity checks, cut by :mod:`grm.runtime.crop` exactly as the tracker does.

Real crops come from sequences in OTB layout (``<seq>/img/*.jpg`` + ``<seq>/groundtruth_rect.txt``, one
``x,y,w,h`` per line): the template from frame 0 around the first box, each search crop from a later frame
around the previous frame's box. Without a data folder, a deterministic synthetic sequence (a textured
target moving over a smooth background) stands in, and the report says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.runtime.crop import normalize, sample_target
from grm.runtime.errors import DatasetError
from grm.runtime.geometry import box_to_crop_xywh, template_box_mask
from grm.runtime.params import TrackerParams

ENV_DATA = "GRM_PARITY_DATA"


@dataclass(frozen=True)
class CropPair:
    """One network input pair: normalised float32 template (1,3,T,T) and search (1,3,S,S), plus the template
    box mask (1, Nz) that roimax/roiavg models read (spec A.9)."""

    name: str
    template: NDArray[np.float32]
    search: NDArray[np.float32]
    template_mask: NDArray[np.float32]


def crop_pairs(params: TrackerParams, data_dir: Path | None, per_sequence: int = 2) -> tuple[list[CropPair], str]:
    """Pairs from ``data_dir`` when given, else synthetic ones; returns (pairs, description of the source)."""
    if data_dir is None:
        return synthetic_pairs(params), "synthetic sequence (no --parity-data given)"
    pairs = sequence_pairs(data_dir, params, per_sequence)
    names = sorted({p.name.split("#")[0] for p in pairs})
    return pairs, f"real frames from {data_dir} ({', '.join(names)})"


def sequence_dirs(root: Path) -> list[Path]:
    """``root`` itself when it is one sequence, else its sub-folders that look like sequences."""
    if (root / "groundtruth_rect.txt").is_file():
        return [root]
    return sorted(p for p in root.iterdir() if (p / "groundtruth_rect.txt").is_file() and (p / "img").is_dir())


def sequence_pairs(root: Path, params: TrackerParams, per_sequence: int = 2) -> list[CropPair]:
    """``per_sequence`` pairs from every sequence under ``root`` (search frames spread over the sequence).

    Raises:
        DatasetError: no sequence found, or a frame that cannot be read.
    """
    if not root.is_dir():
        raise DatasetError(f"parity data folder not found: {root}; pass --parity-data DIR with OTB-layout sequences")
    seqs = sequence_dirs(root)
    if not seqs:
        raise DatasetError(f"{root} holds no sequence (<seq>/img/*.jpg + <seq>/groundtruth_rect.txt)")
    pairs: list[CropPair] = []
    for seq in seqs:
        pairs.extend(_pairs_of_sequence(seq, params, per_sequence))
    return pairs


def _pairs_of_sequence(seq: Path, params: TrackerParams, count: int) -> list[CropPair]:
    frames = sorted((seq / "img").glob("*.jpg"))
    boxes = read_boxes(seq / "groundtruth_rect.txt")
    n = min(len(frames), len(boxes))
    if n < 2:
        raise DatasetError(f"{seq} has {n} usable frames; need at least 2")
    template, mask = _template(read_rgb(frames[0]), boxes[0], params)
    picks = np.unique(np.linspace(1, n - 1, num=count).round().astype(int))
    return [
        CropPair(f"{seq.name}#{k}", template, _crop(read_rgb(frames[k]), boxes[k - 1], params), mask) for k in picks
    ]


def read_boxes(path: Path) -> list[list[float]]:
    """x, y, w, h per line; separators may be commas, tabs or spaces."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        values = [v for v in re.split(r"[,\s]+", line.strip()) if v]
        if len(values) >= 4:
            rows.append([float(v) for v in values[:4]])
    return rows


def read_rgb(path: Path) -> NDArray[np.uint8]:
    """An image file as HxWx3 uint8 RGB."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot read frame {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _crop(frame: NDArray[np.uint8], box: list[float], params: TrackerParams) -> NDArray[np.float32]:
    """Normalised search input cut like the tracker."""
    return normalize(sample_target(frame, box, params.search_factor, params.search_size).image, params.mean, params.std)


def _template(
    frame: NDArray[np.uint8], box: list[float], params: TrackerParams
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Normalised template input and its box mask (1, Nz), as the tracker's initialize makes them."""
    crop = sample_target(frame, box, params.template_factor, params.template_size)
    box_in_crop = box_to_crop_xywh(box, box, crop.resize_factor, params.template_size, normalize=True)
    mask = template_box_mask(box_in_crop, params.template_feat_size)[None]
    return normalize(crop.image, params.mean, params.std), mask


def synthetic_pairs(params: TrackerParams, count: int = 4, seed: int = 0) -> list[CropPair]:
    """Pairs from a deterministic synthetic sequence: textured target drifting over a smooth background."""
    rng = np.random.RandomState(seed)
    height, width = 240, 320
    background = _smooth_background(rng, height, width)
    texture = (rng.rand(24, 32, 3) * 255).astype(np.uint8)
    boxes = [[120.0 + 9 * k, 90.0 + 5 * np.sin(k), 32.0, 24.0] for k in range(count + 1)]
    frames = [_draw(background, texture, box) for box in boxes]
    template, mask = _template(frames[0], boxes[0], params)
    return [
        CropPair(f"synthetic#{k}", template, _crop(frames[k], boxes[k - 1], params), mask) for k in range(1, count + 1)
    ]


def _smooth_background(rng: np.random.RandomState, height: int, width: int) -> NDArray[np.uint8]:
    coarse = (rng.rand(6, 8, 3) * 255).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def _draw(background: NDArray[np.uint8], texture: NDArray[np.uint8], box: list[float]) -> NDArray[np.uint8]:
    frame = background.copy()
    x, y, w, h = (int(round(v)) for v in box)
    patch = cv2.resize(texture, (w, h), interpolation=cv2.INTER_NEAREST)
    patch[:, ::4] = 20  # dark stripes make the target distinct from the background
    frame[y : y + h, x : x + w] = patch
    return frame
