"""Square crops around a box and their normalisation, exactly as the official ``sample_target``.

Images are HxWx3 uint8 arrays (RGB for the network). Boxes are xywh in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.runtime.errors import InputError


@dataclass(frozen=True)
class Crop:
    """A crop and how it relates to the image.

    Attributes:
        image: out_size x out_size x 3 uint8.
        resize_factor: out_size / crop side (crop pixels per image pixel).
        side: crop side in image pixels before resizing.
        origin: (x1, y1) of the crop in image pixels (may be negative).
        pad_mask: out_size x out_size bool, True over padding; None unless requested.
    """

    image: NDArray[np.uint8]
    resize_factor: float
    side: int
    origin: tuple[int, int]
    pad_mask: NDArray[np.bool_] | None = None


def crop_side(box_xywh: Sequence[float], factor: float) -> int:
    """Crop side in image pixels: ceil(sqrt(w*h) * factor); raises for degenerate boxes."""
    w, h = float(box_xywh[2]), float(box_xywh[3])
    area = w * h
    side = math.ceil(math.sqrt(area) * factor) if area > 0 and math.isfinite(area) else 0
    if side < 1:
        raise InputError(f"box {list(box_xywh)} is too small to crop (side {side} px with factor {factor})")
    return side


def sample_target(
    image: NDArray[np.uint8], box_xywh: Sequence[float], factor: float, out_size: int, with_mask: bool = False
) -> Crop:
    """Cut a square of side ``ceil(sqrt(wh)*factor)`` centred on the box, zero-padded, resized bilinearly.

    Matches the official code bit for bit: the origin uses Python's half-to-even ``round``, and a crop that
    reaches past the right/bottom edge drops the image's last column/row (pad = x2 - W + 1).
    """
    x, y, w, h = (float(v) for v in box_xywh)
    side = crop_side(box_xywh, factor)
    x1 = round(x + 0.5 * w - side * 0.5)
    y1 = round(y + 0.5 * h - side * 0.5)
    x2, y2 = x1 + side, y1 + side
    img_h, img_w = image.shape[:2]
    left, right = max(0, -x1), max(x2 - img_w + 1, 0)
    top, bottom = max(0, -y1), max(y2 - img_h + 1, 0)
    patch = image[y1 + top : y2 - bottom, x1 + left : x2 - right]
    if patch.size == 0:
        raise InputError(f"box {[x, y, w, h]} does not overlap the {img_w}x{img_h} image")
    padded = cv2.copyMakeBorder(patch, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)
    resized = cv2.resize(padded, (out_size, out_size))
    mask = None
    if with_mask:
        mask = _pad_mask(padded.shape[:2], top, bottom, left, right, out_size)
    return Crop(image=resized, resize_factor=out_size / side, side=side, origin=(x1, y1), pad_mask=mask)


def _pad_mask(shape: tuple[int, int], top: int, bottom: int, left: int, right: int, out_size: int) -> NDArray[np.bool_]:
    mask = np.ones(shape, dtype=np.float64)
    mask[top : shape[0] - bottom, left : shape[1] - right] = 0
    return cv2.resize(mask, (out_size, out_size)).astype(np.bool_)


def normalize(
    crop_rgb: NDArray[np.uint8], mean: Sequence[float], std: Sequence[float], out: NDArray[np.float32] | None = None
) -> NDArray[np.float32]:
    """RGB uint8 HxWx3 -> float32 1x3xHxW, ``(x/255 - mean)/std`` in float32 as the official preprocessor."""
    mean32 = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    std32 = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    chw = crop_rgb.transpose(2, 0, 1).astype(np.float32)
    chw /= np.float32(255.0)
    chw -= mean32
    chw /= std32
    if out is None:
        return chw[None]
    out[0] = chw
    return out
