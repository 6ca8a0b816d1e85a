"""Drawing on BGR frames: the tracked box, a status line, and the division-mask overlay.

The overlay shows, for each search token, the fraction of dividing blocks in which it joined the template
(class A, ``decisions == 1``), tinted over the search region the network saw for that frame: a square of
side ``ceil(sqrt(w*h) * search_factor)`` image pixels centred on the previous box.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.runtime.crop import crop_side

GREEN, RED, YELLOW, WHITE = (0, 200, 0), (0, 0, 230), (0, 215, 255), (255, 255, 255)
MASK_TINT = np.array([255, 120, 0], dtype=np.float32)  # BGR: blue-ish tokens joined the template
# BGR colours of several targets, by id (1 -> the first); red is left out: it marks a lost target
TARGET_COLOURS = (
    GREEN,
    (255, 144, 30),
    (0, 165, 255),
    (255, 0, 255),
    (255, 255, 0),
    (0, 255, 255),
    (147, 20, 255),
    (128, 128, 0),
    (0, 128, 128),
    (200, 200, 200),
)


def draw_box(frame: NDArray[np.uint8], box_xywh: Sequence[float], color: tuple[int, int, int]) -> None:
    """Draw an xywh pixel box in place (NaN boxes are not drawn)."""
    if not np.all(np.isfinite(box_xywh)):
        return
    x, y, w, h = (float(v) for v in box_xywh)
    thickness = max(1, round(min(frame.shape[:2]) / 240))
    cv2.rectangle(frame, (round(x), round(y)), (round(x + w), round(y + h)), color, thickness)


def target_colour(target_id: int) -> tuple[int, int, int]:
    """The BGR colour of a target (ids from 1); the palette repeats after ten targets."""
    return TARGET_COLOURS[(target_id - 1) % len(TARGET_COLOURS)]


def draw_target(frame: NDArray[np.uint8], box_xywh: Sequence[float], target_id: int, lost: bool = False) -> None:
    """Draw one of several targets in place: its box in its colour and its id (with LOST) on a band above it."""
    if not np.all(np.isfinite(box_xywh)):
        return
    colour = target_colour(target_id)
    draw_box(frame, box_xywh, colour)
    text = f"{target_id} LOST" if lost else str(target_id)
    scale = max(0.35, min(frame.shape[:2]) / 700)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = round(float(box_xywh[0])), round(float(box_xywh[1]))
    top = y - th - base - 4 if y - th - base - 4 >= 0 else y  # inside the box when there is no room above
    cv2.rectangle(frame, (x, top), (x + tw + 4, top + th + base + 4), colour, cv2.FILLED)
    cv2.putText(
        frame, text, (x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, RED if lost else (0, 0, 0), 1, cv2.LINE_AA
    )


def draw_status(frame: NDArray[np.uint8], text: str, color: tuple[int, int, int] = WHITE) -> None:
    """Write a one-line status (frame, score, fps) in the top-left corner on a dark band."""
    scale = max(0.4, min(frame.shape[:2]) / 600)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(frame, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), cv2.FILLED)
    cv2.putText(frame, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def decision_map(decisions: NDArray[np.integer], feat_size: int) -> NDArray[np.float32]:
    """(blocks, F*F) 0/1 decisions -> (F, F) fraction of blocks in which each search token joined the template."""
    share = np.asarray(decisions, dtype=np.float32).reshape(-1, feat_size * feat_size).mean(axis=0)
    return share.reshape(feat_size, feat_size)


def overlay_decisions(
    frame: NDArray[np.uint8],
    decisions: NDArray[np.integer],
    prev_box_xywh: Sequence[float],
    search_factor: float,
    feat_size: int,
    alpha: float = 0.45,
) -> None:
    """Tint, in place, the search region by the share of blocks in which each token joined the template."""
    side = crop_side(prev_box_xywh, search_factor)
    cx = prev_box_xywh[0] + 0.5 * prev_box_xywh[2]
    cy = prev_box_xywh[1] + 0.5 * prev_box_xywh[3]
    x0, y0 = round(cx - 0.5 * side), round(cy - 0.5 * side)
    share = cv2.resize(decision_map(decisions, feat_size), (side, side), interpolation=cv2.INTER_NEAREST)
    height, width = frame.shape[:2]
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    weight = alpha * share[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0, None]
    region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
    frame[fy0:fy1, fx0:fx1] = np.clip(region * (1 - weight) + MASK_TINT * weight, 0, 255).astype(np.uint8)
    cv2.rectangle(frame, (x0, y0), (x0 + side, y0 + side), YELLOW, 1)
