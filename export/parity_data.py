"""Network inputs for parity checks, built by the runtime tracker's own functions (:mod:`grm.runtime.tracker`).

Real inputs come from sequences in OTB layout (``<seq>/img/*.jpg`` + ``<seq>/groundtruth_rect.txt``, one
``x,y,w,h`` per line): the template from frame 0 around the first box, each search crop from a later frame
around the previous frame's box, as the tracker cuts them when it tracked the frame before perfectly.
Without a data folder, a deterministic synthetic sequence (a textured target moving over a smooth
background) stands in, and the report says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.benchmarks.frames import read_rgb
from grm.benchmarks.textio import read_boxes
from grm.runtime.errors import DatasetError
from grm.runtime.params import TrackerParams
from grm.runtime.tracker import TemplateInput, network_inputs, search_input, template_input

ENV_DATA = "GRM_PARITY_DATA"


@dataclass(frozen=True)
class CropPair:
    """One network call's inputs: the tracker's template input and a normalised search crop (1,3,S,S) float32."""

    name: str
    template: TemplateInput
    search: NDArray[np.float32]

    def feeds(self, threshold: float) -> dict[str, NDArray[np.float32]]:
        """The feeds the tracker passes to the network, in contract names, at division ``threshold``."""
        return network_inputs(self.template, self.search, np.array([threshold], dtype=np.float32))


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
        DatasetError: no sequence found, or one with fewer than 2 frames.
        InputError: a frame or box file that cannot be read.
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
    boxes = read_boxes(seq / "groundtruth_rect.txt").tolist()
    n = min(len(frames), len(boxes))
    if n < 2:
        raise DatasetError(f"{seq} has {n} usable frames; need at least 2")
    picks = np.unique(np.linspace(1, n - 1, num=count).round().astype(int))
    return _pairs(seq.name, lambda k: read_rgb(frames[k]), boxes, picks.tolist(), params)


def _pairs(
    name: str,
    frame: Callable[[int], NDArray[np.uint8]],
    boxes: Sequence[Sequence[float]],
    picks: Sequence[int],
    params: TrackerParams,
) -> list[CropPair]:
    """The template from frame 0 around ``boxes[0]``; for each pick k, the search input from frame k around
    ``boxes[k - 1]`` (RGB frames, xywh pixel boxes)."""
    template = template_input(frame(0), boxes[0], params)
    return [CropPair(f"{name}#{k}", template, search_input(frame(k), boxes[k - 1], params)[0]) for k in picks]


def synthetic_pairs(params: TrackerParams, count: int = 4, seed: int = 0) -> list[CropPair]:
    """``count`` pairs from :func:`synthetic_sequence` (one per frame after the first)."""
    frames, boxes = synthetic_sequence(count + 1, seed)
    return _pairs("synthetic", frames.__getitem__, boxes, range(1, count + 1), params)


def synthetic_sequence(length: int, seed: int = 0) -> tuple[list[NDArray[np.uint8]], list[list[float]]]:
    """A deterministic 320x240 RGB clip of a textured target drifting over a smooth background, with its
    xywh pixel boxes."""
    rng = np.random.RandomState(seed)
    height, width = 240, 320
    background = _smooth_background(rng, height, width)
    texture = (rng.rand(24, 32, 3) * 255).astype(np.uint8)
    boxes = [[120.0 + 9 * k, 90.0 + 5 * float(np.sin(k)), 32.0, 24.0] for k in range(length)]
    return [_draw(background, texture, box) for box in boxes], boxes


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
