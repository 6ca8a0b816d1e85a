"""A deterministic stand-in backend and small dataset trees in the official layouts, for benchmark tests.

``FakeBackend`` always puts the score peak in the centre cell with size 0.25 of the search crop and zero
offset: for a square w x w target whose crop side (4 w) is a whole number the tracker then reports the
initial box on every frame, so the expected scores follow from the ground truth by hand.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from grm.runtime import contract
from grm.runtime.params import ModelMetadata, TrackerParams

PARAMS = TrackerParams(
    template_size=32, template_factor=2.0, search_size=64, search_factor=4.0, thresholds={"DEFAULT": 0.0, "UAV": 0.55}
)
IMAGE_WH = (96, 72)
BOX = (30.0, 20.0, 20.0, 20.0)


class FakeBackend:
    name = "fake"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.metadata = ModelMetadata(config="tiny", tracker=PARAMS)
        self.delay_s = delay_s
        self.thresholds: list[float] = []
        self.closed = False

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.thresholds.append(float(inputs[contract.THRESHOLD][0]))
        if self.delay_s:
            time.sleep(self.delay_s)
        f = PARAMS.feat_size
        score = np.zeros((1, 1, f, f), np.float32)
        score[0, 0, f // 2, f // 2] = 0.9
        size = np.full((1, 2, f, f), 0.25, np.float32)
        return {
            contract.SCORE_MAP: score,
            contract.SIZE_MAP: size,
            contract.OFFSET_MAP: np.zeros((1, 2, f, f), np.float32),
        }

    def close(self) -> None:
        self.closed = True


def open_fake() -> FakeBackend:
    return FakeBackend()


def open_slow_fake() -> FakeBackend:
    return FakeBackend(delay_s=0.02)


def write_boxes(path: Path, boxes, sep: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [sep.join("NaN" if np.isnan(v) else f"{v:g}" for v in box) for box in np.asarray(boxes, dtype=float)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_frames(paths) -> None:
    """Small textured JPEG frames (the fake backend ignores the pixels)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (IMAGE_WH[1], IMAGE_WH[0], 3), dtype=np.uint8)
    for p in paths:
        Path(p).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), image)


def still_boxes(n: int, box=BOX) -> np.ndarray:
    return np.tile(np.asarray(box, dtype=float), (n, 1))
