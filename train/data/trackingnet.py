"""TrackingNet training chunks (docs/training.md, data sources): ``<root>/TRAIN_<k>/anno/<vid>.txt`` (comma) and
``<root>/TRAIN_<k>/frames/<vid>/<i>.jpg`` (0-based), k = 0..11.

Only every 30th frame (index % 30 == 0) and the last frame are visible to the sampler, as in the
official recipe, and only where w, h > 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from grm.runtime.errors import DatasetError
from grm.train.data.base import SequenceInfo, VideoDataset, read_boxes, read_rgb, require_dir, valid_size

ALL_CHUNKS = tuple(range(12))
FRAME_STEP = 30


def subsampled_visible(num_frames: int, step: int = FRAME_STEP) -> NDArray[np.bool_]:
    """Frames the sampler may use: index % step == 0, plus the last frame."""
    keep = np.arange(num_frames) % step == 0
    keep[-1] = True
    return keep


class TrackingNet(VideoDataset):
    """TrackingNet training videos of the given chunks (all twelve by default)."""

    name = "TRACKINGNET"

    def __init__(self, root: str | Path, chunks: Sequence[int] = ALL_CHUNKS) -> None:
        self.root = require_dir(Path(root), "TrackingNet", "set --trackingnet-dir or GRM_TRACKINGNET_DIR")
        missing = [k for k in chunks if not (self.root / f"TRAIN_{k}" / "anno").is_dir()]
        if missing:
            raise DatasetError(
                f"TrackingNet root {self.root} lacks TRAIN_{missing[0]}/anno "
                f"({len(missing)} of {len(chunks)} chunks missing); expected TRAIN_0 .. TRAIN_11"
            )
        self.sequences = [
            (k, p.stem) for k in chunks for p in sorted((self.root / f"TRAIN_{k}" / "anno").glob("*.txt"))
        ]
        if not self.sequences:
            raise DatasetError(f"TrackingNet root {self.root} has no annotation files in TRAIN_*/anno/")

    def _read_info(self, seq: int) -> SequenceInfo:
        chunk, video = self.sequences[seq]
        boxes = read_boxes(self.root / f"TRAIN_{chunk}" / "anno" / f"{video}.txt")
        visible = subsampled_visible(len(boxes)) & valid_size(boxes)
        return SequenceInfo(boxes=boxes, visible=visible)

    def frame(self, seq: int, frame_id: int) -> NDArray[np.uint8]:
        chunk, video = self.sequences[seq]
        return read_rgb(self.root / f"TRAIN_{chunk}" / "frames" / video / f"{frame_id}.jpg")
