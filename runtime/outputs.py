"""Result files and live views of a tracking run: boxes file, annotated video, window, JSON summary.

Boxes file (``--boxes-out``): one line per input frame, comma-separated ``x,y,w,h`` floats in image pixels
(x, y = top-left corner), the first line being the initial box. With ``--with-score`` a fifth column holds
the target confidence (peak of the Hann-weighted response, in [0, 1)); the initial line's score is ``1``.
A **skipped frame** (unreadable or corrupt) repeats the previous box, since that is the tracker's state,
and its score is ``nan``; the JSON summary lists skipped frames by index.

With several targets the boxes file holds MOTChallenge result lines instead, which TrackEval and py-motmetrics
read: ``frame,id,x,y,w,h,score,-1,-1,-1``, frame and target id counted from 1, one line per target and input
frame (frame 1 holds the initial boxes with score ``1``; a skipped frame repeats each previous box, score ``nan``).
``x,y`` follow MOTChallenge's 1-based pixel convention (the top-left pixel is 1,1), so they are the image-pixel
box's plus 1; py-motmetrics subtracts that 1 again when it loads the file.

Every file is written atomically: to a temporary file in the same folder, renamed into place when complete.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.runtime.atomic import STDOUT, atomic_write_text, is_stream, temp_path_for
from grm.runtime.errors import InputError, OutputError, os_error_cause

WINDOW = "grm-run"
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def format_boxes(rows: Iterable[tuple[tuple[float, float, float, float], float]], with_score: bool) -> str:
    """Boxes file text from (box_xywh, score) rows: ``x,y,w,h`` or ``x,y,w,h,score`` with 4 decimals."""
    lines = []
    for box, score in rows:
        values = [*box, score] if with_score else list(box)
        lines.append(",".join(_fmt(v) for v in values))
    return "\n".join(lines) + ("\n" if lines else "")


def format_mot(rows: Iterable[tuple[int, int, tuple[float, float, float, float], float]]) -> str:
    """MOTChallenge lines ``frame,id,x,y,w,h,score,-1,-1,-1`` from (frame, id, box_xywh, score) rows, frame and id
    counted from 1; ``box_xywh`` in image pixels (top-left pixel 0,0) is written 1-based as MOTChallenge counts
    (x + 1, y + 1); the unused 3-D world coordinates are -1; pixel values and score with 4 decimals."""
    lines = []
    for frame, target, (x, y, w, h), score in rows:
        values = ",".join(_fmt(v) for v in (x + MOT_ORIGIN, y + MOT_ORIGIN, w, h, score))
        lines.append(f"{frame},{target},{values},-1,-1,-1")
    return "\n".join(lines) + ("\n" if lines else "")


MOT_ORIGIN = 1.0  # MOTChallenge's pixel coordinate of the image's top-left pixel


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def write_boxes(
    path: str | Path, rows: Iterable[tuple[tuple[float, float, float, float], float]], with_score: bool
) -> Path:
    """Write the boxes file atomically."""
    return _write(path, format_boxes(rows, with_score), "boxes file")


def write_mot(path: str | Path, rows: Iterable[tuple[int, int, tuple[float, float, float, float], float]]) -> Path:
    """Write the several-target boxes file (MOTChallenge lines, :func:`format_mot`) atomically."""
    return _write(path, format_mot(rows), "boxes file")


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write a JSON document atomically (NaN becomes null, so any JSON reader can load it)."""
    return _write(path, json.dumps(nan_to_none(data), indent=2, sort_keys=True) + "\n", "JSON summary")


def _write(path: str | Path, text: str, what: str) -> Path:
    try:
        return atomic_write_text(path, text)
    except OSError as e:
        raise OutputError(f"cannot write the {what} {_shown(path)}: {os_error_cause(e)}") from None


def _shown(path: str | Path) -> str:
    return "to standard output" if str(path) == STDOUT else str(path)


def check_output(path: str | Path, option: str) -> None:
    """Fail before any work when ``path`` cannot become a file: a folder in the way, or a parent that is not a
    writable folder (read-only file system, no permission). ``-`` and device files/FIFOs are written in place."""
    target = Path(path)
    if is_stream(path):
        return
    if target.is_dir():
        raise OutputError(f"{option} {target} is a folder; give a file name")
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{option} {target}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(
            f"{option} {target}: cannot create files in {parent} (read-only file system or no permission)"
        )


def nan_to_none(value: Any) -> Any:
    """Replace NaN and infinities by None in nested dicts, lists and tuples, so the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nan_to_none(v) for v in value]
    return value


class VideoSink:
    """Annotated video, opened on the first frame (its size fixes the video's), renamed into place on close.

    Frames go to a temporary file beside ``path`` (same suffix); :meth:`close` checks that the finished file
    holds every frame and renames it, so the video holds every frame written so far even after an early end or
    Ctrl-C. The codec follows the suffix: ``mp4v`` for .mp4/.m4v/.mov, ``MJPG`` for .avi/.mkv.

    OpenCV's writer reports no write errors (it logs and goes on), so failures are caught around it: before
    each frame the free space of the file system must exceed the raw frame size plus a margin, and the finished
    file must open with the right frame count. Either failure is an :class:`OutputError` and no file is left.
    """

    def __init__(self, path: str | Path, fps: float | None) -> None:
        self.path = Path(path)
        self.fps = fps or 30.0
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] = (0, 0)
        self.frames = 0

    def write(self, frame: NDArray[np.uint8]) -> None:
        writer = self._writer if self._writer is not None else self._open(frame.shape[1], frame.shape[0])
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size)
        self._check_space(frame.nbytes)
        writer.write(frame)
        self.frames += 1

    def _open(self, width: int, height: int) -> cv2.VideoWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = temp_path_for(self.path)
        except OSError as e:
            raise OutputError(f"cannot write the video {self.path}: {os_error_cause(e)}") from None
        fourcc = cv2.VideoWriter_fourcc(*_FOURCC.get(self.path.suffix.lower(), "mp4v"))
        writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (width, height))
        if not writer.isOpened():
            self.discard()
            raise OutputError(f"cannot write the video {self.path}: OpenCV could not open an encoder for it")
        self._writer, self._size = writer, (width, height)
        return writer

    def _check_space(self, frame_bytes: int) -> None:
        assert self._tmp is not None
        try:
            free = free_bytes(self._tmp.parent)
        except OSError as e:
            self.discard()
            raise OutputError(f"cannot write the video {self.path}: {os_error_cause(e)}") from None
        if free < frame_bytes + VIDEO_SPACE_MARGIN:
            self.discard()
            raise OutputError(
                f"cannot write the video {self.path}: no space left on the device ({free / 1e6:.1f} MB free)"
            )

    def close(self) -> bool:
        """Finish the file, check it and move it into place; False when there was nothing to write."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is None or not self.frames:
            self.discard()
            return False
        try:
            self._verify(self._tmp)
            os.replace(self._tmp, self.path)
            return True
        except OSError as e:
            raise OutputError(f"cannot write the video {self.path}: {os_error_cause(e)}") from None
        finally:
            self.discard()

    def discard(self) -> None:
        """Drop the temporary file (a failed video never reaches ``path``)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def _verify(self, tmp: Path) -> None:
        capture = cv2.VideoCapture(str(tmp))
        try:
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        finally:
            capture.release()
        if count < self.frames:
            raise OutputError(
                f"cannot write the video {self.path}: the encoder wrote {count} of {self.frames} frames "
                "(disk full or a write error)"
            )


VIDEO_SPACE_MARGIN = 4 << 20  # bytes kept free beyond one raw frame: encoder buffers and the closing index


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``folder``."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def video_suffix_ok(path: str | Path) -> bool:
    """Whether ``--video-out`` names a container the writer has a codec for."""
    return Path(path).suffix.lower() in _FOURCC


def video_suffixes() -> str:
    return ", ".join(_FOURCC)


def has_display() -> bool:
    """Whether a window can be opened: a GUI-enabled OpenCV and, on Linux, $DISPLAY or $WAYLAND_DISPLAY."""
    if not gui_available():
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def gui_available() -> bool:
    """False for the headless OpenCV wheels (built without a GUI backend)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() != "NONE"
    return True


def require_display(purpose: str) -> None:
    """Raise a one-line InputError naming what is missing when no window can be opened."""
    if not gui_available():
        raise InputError(f"{purpose} needs a window, but this OpenCV has no GUI (headless); pip install opencv-python")
    if not has_display():
        raise InputError(f"{purpose} needs a display, but none was found ($DISPLAY is not set)")


class WindowSink:
    """Shows frames in a window; :meth:`show` returns False when the user pressed q or Esc."""

    def __init__(self) -> None:
        require_display("--show")
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)

    def show(self, frame: NDArray[np.uint8]) -> bool:
        cv2.imshow(WINDOW, frame)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(WINDOW)


def select_box(frame: NDArray[np.uint8]) -> tuple[float, float, float, float]:
    """Let the user draw the initial box on the first frame (Enter/Space confirms, c cancels)."""
    require_display("drawing the initial box (no --box given)")
    x, y, w, h = cv2.selectROI(WINDOW, frame, showCrosshair=True, fromCenter=False)
    cv2.destroyWindow(WINDOW)
    if w <= 0 or h <= 0:
        raise InputError("no box was drawn; draw one and press Enter, or give --box x,y,w,h")
    return float(x), float(y), float(w), float(h)


def select_boxes(frame: NDArray[np.uint8]) -> list[tuple[float, float, float, float]]:
    """Let the user draw several boxes on the first frame (Enter/Space after each one, Esc when done)."""
    require_display("drawing the initial boxes (no --box given)")
    drawn = cv2.selectROIs(WINDOW, frame, showCrosshair=True, fromCenter=False)
    cv2.destroyWindow(WINDOW)
    boxes = [(float(x), float(y), float(w), float(h)) for x, y, w, h in np.reshape(drawn, (-1, 4)) if w > 0 and h > 0]
    if not boxes:
        raise InputError("no box was drawn; draw boxes (Enter after each, Esc to finish), or give --box x,y,w,h")
    return boxes
