"""The ``demo`` source of grm-run: a generated clip and the model shipped in the package, no downloads.

``grm-run demo`` tracks a textured object moving and changing scale over a textured background; the clip is
generated on the fly (deterministic) and its first box is known, so no ``--box`` is needed. The model is
``grm/runtime/assets/demo.onnx`` when this build ships one (an export of the project's small demo model);
otherwise ``--model`` must name a grm export and the demo clip still runs. ``grm-run`` on any other source without
``--model`` runs the demo model too, with :data:`DEMO_NOTICE`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.runtime.errors import InputError
from grm.runtime.sources import Frame, SourceInfo

log = logging.getLogger(__name__)
DEMO = "demo"
ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_MODEL = ASSETS / "demo.onnx"
DEMO_NOTICE = (
    "no --model given: tracking with the bundled demo model, a tiny GRM trained only on generated clips: good for "
    "trying grm-run and its outputs, not for real video; for the official weights run grm-export fetch --from-zip "
    "Trained_Models.zip, then grm-export --config vitb_256, and pass grm_vitb_256.onnx as --model"
)


def is_demo(source: str) -> bool:
    """``demo`` means the generated clip unless a file or folder of that name exists (then that is tracked)."""
    if source != DEMO:
        return False
    if Path(source).exists():
        log.warning(
            "'%s' names an existing file or folder here, which is tracked instead of the generated demo "
            "clip; run grm-run demo from another folder for the clip",
            source,
        )
        return False
    return True


def demo_init_box() -> tuple[float, float, float, float]:
    """First box of the demo clip (the same for any clip length)."""
    return demo_clip(frames=1)[1][0]


def demo_model() -> Path:
    """The bundled demo model, or an InputError saying which model to pass instead."""
    if DEMO_MODEL.is_file():
        return DEMO_MODEL
    raise InputError(
        "no --model given and this grm-tracker build ships no demo model (grm/runtime/assets/demo.onnx); give a "
        "model of your own, e.g. grm-run demo --model MODEL.onnx (export one with grm-export --config NAME)"
    )


def _texture(rng: np.random.Generator, height: int, width: int, cells: int) -> NDArray[np.uint8]:
    """Smooth, muted colour noise: random values on a coarse grid, upsampled bicubically, half desaturated."""
    coarse = rng.uniform(30, 220, size=(cells, max(2, cells * width // height), 3)).astype(np.float32)
    colour = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grey = colour.mean(axis=2, keepdims=True)
    return np.clip(0.4 * colour + 0.6 * grey, 0, 255).astype(np.uint8)


def _object(rng: np.random.Generator, size: int) -> NDArray[np.uint8]:
    """A bright, high-contrast checkered patch with a coloured rim, easy to tell from the background."""
    tile = max(2, size // 6)
    yy, xx = np.mgrid[:size, :size]
    checker = ((yy // tile + xx // tile) % 2).astype(np.float32)
    patch = np.empty((size, size, 3), np.float32)
    colour_a, colour_b = rng.uniform(180, 255, 3), rng.uniform(0, 60, 3)
    patch[:] = checker[..., None] * colour_a + (1 - checker[..., None]) * colour_b
    patch[:3], patch[-3:], patch[:, :3], patch[:, -3:] = (0, 0, 255), (0, 0, 255), (0, 0, 255), (0, 0, 255)
    return patch.astype(np.uint8)


def demo_clip(
    frames: int = 90, height: int = 240, width: int = 320, seed: int = 0
) -> tuple[list[Frame], list[tuple[float, float, float, float]]]:
    """BGR frames and ground-truth xywh boxes of an object on a Lissajous path whose size breathes by +-20 %."""
    rng = np.random.default_rng(seed)
    background = _texture(rng, height, width, cells=12)
    patch = _object(rng, 64)
    images, boxes = [], []
    for i in range(frames):
        t = 2 * math.pi * i / frames
        side = round(40 * (1 + 0.2 * math.sin(2 * t)))
        cx = width / 2 + (width / 2 - 40) * math.sin(t)
        cy = height / 2 + (height / 2 - 40) * math.sin(2 * t + 0.5) * 0.8
        x, y = round(cx - side / 2), round(cy - side / 2)
        image = background.copy()
        image[y : y + side, x : x + side] = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)
        images.append(image)
        boxes.append((float(x), float(y), float(side), float(side)))
    return images, boxes


class DemoSource:
    """The generated demo clip as a frame source; ``init_box`` is its first ground-truth box (xywh pixels)."""

    def __init__(self, frames: int = 90) -> None:
        self._frames, self.boxes = demo_clip(frames)
        self.init_box = self.boxes[0]
        self.info = SourceInfo(kind="demo", description="demo (generated clip)", frame_count=frames, fps=30.0)
        self.ended_early = False

    def __iter__(self) -> Iterator[tuple[int, Frame | None]]:
        for index, frame in enumerate(self._frames):
            yield index, frame.copy()

    def close(self) -> None:
        """Nothing to release."""
