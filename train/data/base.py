"""What every training dataset offers the sampler, and the file readers they share.

A dataset is a list of sequences; each has per-frame boxes (xywh, pixels) and a visibility flag, and
returns frames as HxWx3 uint8 RGB (read with OpenCV and converted, as the official loaders do).
Any missing or malformed file raises :class:`DatasetError` naming the file and the expected layout.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.benchmarks import textio
from grm.runtime.errors import DatasetError, InputError


@dataclass(frozen=True)
class SequenceInfo:
    """Annotations of one sequence.

    Attributes:
        boxes: (N, 4) float32 xywh in pixels, one row per frame.
        visible: (N,) bool, frames the sampler may draw (dataset-specific rule, docs/training.md).
    """

    boxes: NDArray[np.float32]
    visible: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@runtime_checkable
class TrackingDataset(Protocol):
    """A training source. ``is_video`` False means every sequence is one still image (COCO)."""

    name: str
    is_video: bool

    def __len__(self) -> int: ...

    def sequence_info(self, seq: int) -> SequenceInfo: ...

    def frame(self, seq: int, frame_id: int) -> NDArray[np.uint8]: ...


class InfoCache:
    """Small LRU of parsed sequence annotations (each sample re-reads its sequence otherwise)."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._items: OrderedDict[int, SequenceInfo] = OrderedDict()

    def get(self, key: int) -> SequenceInfo | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: int, info: SequenceInfo) -> SequenceInfo:
        self._items[key] = info
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return info


def read_rgb(path: Path) -> NDArray[np.uint8]:
    """Read an image file as RGB uint8; a missing or undecodable file is a :class:`DatasetError`."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        what = "is not a readable image" if path.is_file() else "does not exist"
        raise DatasetError(f"frame {path} {what}; check the dataset download is complete")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_boxes(path: Path) -> NDArray[np.float32]:
    """Read an N x 4 box file (x,y,w,h per line); raises :class:`DatasetError` when missing or malformed."""
    if not path.is_file():
        raise DatasetError(f"annotation file {path} does not exist; check the dataset layout")
    try:
        boxes = textio.read_boxes(path)
    except InputError as e:
        raise DatasetError(str(e)) from e
    if len(boxes) == 0:
        raise DatasetError(f"annotation file {path} is empty")
    return boxes.astype(np.float32)


def read_flags(path: Path, expected: int, one_line: bool = False) -> NDArray[np.int64]:
    """Read integer per-frame flags: one per line, or comma separated on one line (``one_line``, LaSOT)."""
    if not path.is_file():
        raise DatasetError(f"label file {path} does not exist; check the dataset layout")
    text = path.read_text()
    tokens = text.replace("\n", ",").split(",") if one_line else text.split()
    try:
        values = np.asarray([int(float(t)) for t in tokens if t.strip()], dtype=np.int64)
    except ValueError as e:
        raise DatasetError(f"{path}: expected integer flags: {e}") from e
    if values.shape[0] != expected:
        raise DatasetError(f"{path}: {values.shape[0]} flags for {expected} annotated frames")
    return values


def valid_size(boxes: NDArray[np.float32]) -> NDArray[np.bool_]:
    """Frames whose box has positive width and height."""
    return (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def require_dir(path: Path, what: str, hint: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what} root {path} is not a directory; {hint}")
    return path


class VideoDataset:
    """Base of the video readers: the sequence list, and parsed annotations cached per sequence (LRU).

    Subclasses set ``self.sequences`` and implement ``_read_info``.
    """

    is_video = True
    sequences: list

    def __len__(self) -> int:
        return len(self.sequences)

    def sequence_info(self, seq: int) -> SequenceInfo:
        cache = self.__dict__.setdefault("_cache", InfoCache())
        cached = cache.get(seq)
        return cached if cached is not None else cache.put(seq, self._read_info(seq))

    def _read_info(self, seq: int) -> SequenceInfo:
        raise NotImplementedError
