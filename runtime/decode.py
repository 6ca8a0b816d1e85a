"""CENTER-head post-processing: Hann window and box decoding, in numpy float32 like the official code."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray


@lru_cache(maxsize=8)
def hann2d(size: int) -> NDArray[np.float32]:
    """size x size window, outer product of ``0.5(1 - cos(2 pi k/(size+1)))``, k = 1..size (no zero edges)."""
    k = np.arange(1, size + 1, dtype=np.float32)
    h = np.float32(0.5) * (np.float32(1.0) - np.cos(np.float32(2 * math.pi / (size + 1)) * k))
    window = (h[:, None] * h[None, :]).astype(np.float32)
    window.setflags(write=False)
    return window


def decode_box(
    score_map: NDArray[np.float32], size_map: NDArray[np.float32], offset_map: NDArray[np.float32]
) -> tuple[NDArray[np.float32], float]:
    """Decode one box from (F,F) score, (2,F,F) size and (2,F,F) offset maps.

    Returns the box as normalised (cx, cy, w, h) in the search crop (float32) and the peak score.
    The first maximum wins; ``cx = (col + offset_x) / F`` with no half-cell shift.
    """
    feat = score_map.shape[-1]
    flat = score_map.reshape(-1)
    idx = int(np.argmax(flat))
    iy, ix = divmod(idx, feat)
    size = size_map.reshape(2, -1)[:, idx]
    offset = offset_map.reshape(2, -1)[:, idx]
    f = np.float32(feat)
    box = np.array(
        [(np.float32(ix) + offset[0]) / f, (np.float32(iy) + offset[1]) / f, size[0], size[1]], dtype=np.float32
    )
    return box, float(flat[idx])
