"""The centre heat-map label of the CENTER head, in numpy float32 like the official torch code.

See docs/training.md, heat-map label.

Boxes are normalised x1y1wh of the search crop; the map has F x F cells (F = search size // stride).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

MIN_OVERLAP = 0.7


def gaussian_radius(wh: ArrayLike, min_overlap: float = MIN_OVERLAP) -> NDArray[np.int64]:
    """Integer Gaussian radius per (w, h) in cells: ``int(max(0, min(r1, r2, r3)))``.

    This is CornerNet's radius as the official code has it: each quadratic root is divided by 2 instead
    of by 2a, which gives larger radii than the corrected formula (kept on purpose: it defines the labels
    the released models were trained on). Computed in float32.
    """
    wh32 = np.asarray(wh, dtype=np.float32)
    w, h = wh32[..., 0], wh32[..., 1]
    o = np.float32(min_overlap)
    b1 = h + w
    c1 = w * h * (1 - o) / (1 + o)
    r1 = (b1 + np.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - o) * w * h
    r2 = (b2 + np.sqrt(b2**2 - 16 * c2)) / 2
    b3 = -2 * o * (h + w)
    c3 = (o - 1) * w * h
    r3 = (b3 + np.sqrt(b3**2 - 16 * o * c3)) / 2
    r = np.maximum(np.minimum(r1, np.minimum(r2, r3)), 0)
    return r.astype(np.int64)  # truncation toward zero, as torch's .type(torch.int)


def gaussian_window(radius: int) -> NDArray[np.float32]:
    """(2r+1)^2 Gaussian with sigma (2r+1)/6, peak exactly 1, values below eps*max set to 0."""
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    sigma = (2 * radius + 1) / 6
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    return g.astype(np.float32)


def label_centre(box_norm_xywh: ArrayLike, feat_size: int) -> tuple[int, int]:
    """Integer centre cell (x, y): the box centre in cells rounded half-to-even (float32 arithmetic)."""
    box = np.asarray(box_norm_xywh, dtype=np.float32) * np.float32(feat_size)
    centre = np.round(box[:2] + box[2:4] / np.float32(2))
    return int(centre[0]), int(centre[1])


def heatmap(box_norm_xywh: ArrayLike, feat_size: int) -> NDArray[np.float32]:
    """F x F label: the Gaussian window at the rounded centre, clipped at the map border.

    A centre outside the map still draws the part of its window that overlaps the map (the official
    slicing amounts to this clipping); with radius 0 an outside centre draws nothing.
    """
    out = np.zeros((feat_size, feat_size), np.float32)
    box = np.asarray(box_norm_xywh, dtype=np.float32) * np.float32(feat_size)
    radius = int(gaussian_radius(box[2:4]))
    cx, cy = label_centre(box_norm_xywh, feat_size)
    g = gaussian_window(radius)
    x0, x1 = max(cx - radius, 0), min(cx + radius + 1, feat_size)
    y0, y1 = max(cy - radius, 0), min(cy + radius + 1, feat_size)
    if x1 > x0 and y1 > y0:
        patch = g[y0 - (cy - radius) : y1 - (cy - radius), x0 - (cx - radius) : x1 - (cx - radius)]
        out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], patch)
    return out
