"""Reading benchmark frames the way the official evaluation did: OpenCV (BGR) converted to RGB."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.runtime.errors import InputError


def read_rgb(path: str | Path) -> NDArray[np.uint8]:
    """HxWx3 uint8 RGB frame; a missing or undecodable file is an :class:`InputError` naming it."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        reason = "file not found" if not Path(path).is_file() else "OpenCV cannot decode it"
        raise InputError(f"cannot read frame {path}: {reason}; check the dataset's image folders")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
