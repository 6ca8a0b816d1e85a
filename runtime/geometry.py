"""Box formats, crop-coordinate mapping and clipping, in pure numpy.

Box formats are in the names: ``xywh`` = (x1, y1, w, h), ``xyxy`` = (x1, y1, x2, y2),
``cxcywh`` = (centre x, centre y, w, h). Units are pixels unless a name says ``norm``.
Every function accepts one box of shape (4,) or a batch of shape (..., 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from grm.runtime.errors import InputError

FloatArray = NDArray[np.floating]


def xywh_to_xyxy(box: ArrayLike) -> FloatArray:
    b = np.asarray(box, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:4]], axis=-1)


def cxcywh_to_xywh(box: ArrayLike) -> FloatArray:
    b = np.asarray(box, dtype=np.float64)
    return np.concatenate([b[..., :2] - 0.5 * b[..., 2:4], b[..., 2:4]], axis=-1)


def box_to_crop_xywh(
    box_xywh: ArrayLike, ref_box_xywh: ArrayLike, resize_factor: float, out_size: int, normalize: bool = False
) -> FloatArray:
    """Map an image box into a crop cut around ``ref_box_xywh`` (training labels, template mask).

    The crop centre is ``(out_size - 1) / 2`` (the official label convention, unlike the test-time map-back,
    which uses ``crop / 2``). Returns xywh in crop pixels, or in [0, 1] crop units when ``normalize``.
    """
    box = np.asarray(box_xywh, dtype=np.float64)
    ref = np.asarray(ref_box_xywh, dtype=np.float64)
    centre = box[..., :2] + 0.5 * box[..., 2:4]
    ref_centre = ref[..., :2] + 0.5 * ref[..., 2:4]
    out_centre = (out_size - 1) / 2 + (centre - ref_centre) * resize_factor
    out_wh = box[..., 2:4] * resize_factor
    out = np.concatenate([out_centre - 0.5 * out_wh, out_wh], axis=-1)
    return out / out_size if normalize else out


def template_box_mask(box_xywh_norm: ArrayLike, grid: int) -> NDArray[np.float32]:
    """(grid*grid,) row-major 0/1 mask of the template cells a normalised template-crop box covers.

    See docs/tracker.md, template box mask.

    Rows ``max(int(y1), 0) <= r < min(int(y1 + h + 1), grid)`` with the box in cell units; columns likewise.
    """
    x1, y1, w, h = (float(v) * grid for v in np.asarray(box_xywh_norm, dtype=np.float64))
    mask = np.zeros((grid, grid), dtype=np.float32)
    mask[max(int(y1), 0) : min(int(y1 + h + 1), grid), max(int(x1), 0) : min(int(x1 + w + 1), grid)] = 1.0
    return mask.reshape(-1)


def map_box_back(
    pred_cxcywh_crop: Sequence[float], prev_box_xywh: Sequence[float], search_size: int, resize_factor: float
) -> list[float]:
    """Map a decoded box from search-crop pixels back to the image (official test-time rule).

    ``pred_cxcywh_crop`` is (cx, cy, w, h) in search-crop pixels scaled to the crop side in image pixels;
    the crop is taken as centred on the previous (unrounded) box, half side ``search_size / rf / 2``.
    Returns xywh in image pixels.
    """
    cx_prev = prev_box_xywh[0] + 0.5 * prev_box_xywh[2]
    cy_prev = prev_box_xywh[1] + 0.5 * prev_box_xywh[3]
    cx, cy, w, h = (float(v) for v in pred_cxcywh_crop)
    half_side = 0.5 * search_size / resize_factor
    cx_real = cx + (cx_prev - half_side)
    cy_real = cy + (cy_prev - half_side)
    return [cx_real - 0.5 * w, cy_real - 0.5 * h, w, h]


def clip_box(box_xywh: Sequence[float], height: int, width: int, margin: float = 10) -> list[float]:
    """Keep a box inside the image with the official margin: at least ``margin`` px wide/high and inside.

    Returns xywh in pixels (the tracker's next state).
    """
    x1, y1, w, h = (float(v) for v in box_xywh)
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0, x1), width - margin)
    x2 = min(max(margin, x2), width)
    y1 = min(max(0, y1), height - margin)
    y2 = min(max(margin, y2), height)
    w = max(margin, x2 - x1)
    h = max(margin, y2 - y1)
    return [x1, y1, w, h]


def validate_init_box(box_xywh: Sequence[float], height: int, width: int) -> list[float]:
    """Check a user's initial box before tracking starts; raise :class:`InputError` naming the problem."""
    values = [float(v) for v in box_xywh]
    if len(values) != 4:
        raise InputError(f"initial box must have 4 values x,y,w,h; got {len(values)}")
    x, y, w, h = values
    if not all(np.isfinite(values)):
        raise InputError(f"initial box {values} contains NaN or infinity")
    if w <= 0 or h <= 0:
        raise InputError(f"initial box {values} has zero or negative size (w={w}, h={h}); give x,y,w,h with w,h > 0")
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise InputError(f"initial box {values} lies outside the {width}x{height} image; give x,y,w,h in pixels")
    return values


def iou_xywh(a: ArrayLike, b: ArrayLike) -> FloatArray:
    """Continuous IoU of xywh boxes (no pixel-inclusive convention; for parity checks, not benchmark metrics)."""
    a_xyxy, b_xyxy = xywh_to_xyxy(a), xywh_to_xyxy(b)
    tl = np.maximum(a_xyxy[..., :2], b_xyxy[..., :2])
    br = np.minimum(a_xyxy[..., 2:], b_xyxy[..., 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=-1)
    area_a = np.prod(np.asarray(a, dtype=np.float64)[..., 2:4], axis=-1)
    area_b = np.prod(np.asarray(b, dtype=np.float64)[..., 2:4], axis=-1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
