"""Frame sources: video files, folders of frames, camera indices and stream URLs.

Every source yields ``(index, frame)`` with ``frame`` an HxWx3 uint8 **BGR** image (OpenCV's order), or
``None`` when that frame could not be decoded, so callers keep one result per input frame.

How a source is chosen from the ``SOURCE`` string:

- an existing folder: its image files (``IMAGE_SUFFIXES``) in *natural* name order, so ``2.jpg`` comes before
  ``10.jpg`` and ``img_9.png`` before ``img_10.png`` (digit runs compare as numbers, the rest as text,
  case-insensitively). A file that OpenCV cannot decode yields ``None`` (reported, then skipped by the runner);
- an existing file: a video, opened with ``cv2.VideoCapture``;
- a whole number such as ``0``: a camera index;
- anything with ``://`` (``rtsp://``, ``http://``, ``udp://``...): a stream URL opened with ``cv2.VideoCapture``.

For videos, cameras and streams a failed read ends the stream: OpenCV cannot tell a corrupt frame from the
end there. When the container announced more frames than were read, :attr:`FrameSource.ended_early` is set.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.runtime.errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
Frame = NDArray[np.uint8]


@dataclass(frozen=True)
class SourceInfo:
    """What is known about a source before reading it.

    Attributes:
        kind: ``video``, ``folder``, ``camera`` or ``stream``.
        description: the path, index or URL, for messages.
        frame_count: number of frames if known (folders; videos as the container reports it), else None.
        fps: nominal frame rate if known (videos, some cameras), else None.
    """

    kind: str
    description: str
    frame_count: int | None = None
    fps: float | None = None


def quiet_opencv() -> None:
    """Silence OpenCV's and FFmpeg's own log lines, so a command's one-line error is all a user sees.

    FFmpeg reads ``OPENCV_FFMPEG_LOGLEVEL`` when OpenCV first opens a video, so this must run before any
    ``cv2.VideoCapture``/``VideoWriter``; values already set in the environment win (for debugging).
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    if os.environ["OPENCV_LOG_LEVEL"].upper() == "SILENT":
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key comparing digit runs as numbers and other text case-insensitively."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in parts if p)


class FolderSource:
    """Image files of one folder in natural name order; undecodable files yield ``None`` (reported by the reader,
    which knows what follows: a skipped frame, or an error for the first one)."""

    def __init__(self, folder: Path) -> None:
        self.files = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: natural_key(p.name),
        )
        if not self.files:
            raise InputError(f"folder {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        self.info = SourceInfo(kind="folder", description=str(folder), frame_count=len(self.files))
        self.ended_early = False

    def __iter__(self) -> Iterator[tuple[int, Frame | None]]:
        for index, path in enumerate(self.files):
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            yield index, (None if frame is None or frame.size == 0 else frame)

    def frame_name(self, index: int) -> str:
        """File name of frame ``index``, for messages about it (the reader of the source reports failures)."""
        return self.files[index].name

    def close(self) -> None:
        """Nothing to release."""


class CaptureSource:
    """A video file, camera or stream read through ``cv2.VideoCapture``."""

    def __init__(self, capture: cv2.VideoCapture, info: SourceInfo) -> None:
        self._capture = capture
        self.info = info
        self.ended_early = False

    def __iter__(self) -> Iterator[tuple[int, Frame | None]]:
        index = 0
        while self._capture is not None:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                break
            yield index, _as_bgr(frame)
            index += 1
        expected = self.info.frame_count
        if self.info.kind == "video" and expected and index < expected:
            self.ended_early = True
            log.warning("%s ended after %d of %d frames", self.info.description, index, expected)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def _as_bgr(frame: Frame) -> Frame:
    """Cameras may deliver grey or BGRA frames; the tracker wants 3 channels."""
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def _capture_info(capture: cv2.VideoCapture, kind: str, description: str) -> SourceInfo:
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    return SourceInfo(
        kind=kind,
        description=description,
        frame_count=count if kind == "video" and count > 0 else None,
        fps=fps if 0 < fps < 1000 else None,
    )


def _open_capture(target: str | int, kind: str, description: str) -> CaptureSource:
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        hint = {
            "video": "the file is not a video OpenCV can decode",
            "camera": "no camera with that index, or it is busy",
            "stream": "check the URL and that the stream is live",
        }[kind]
        raise InputError(f"cannot open {kind} {description}: {hint}")
    return CaptureSource(capture, _capture_info(capture, kind, description))


class FrameSource(Protocol):
    """What a tracking session reads: numbered BGR frames (None for a frame that cannot be decoded)."""

    info: SourceInfo
    ended_early: bool

    def __iter__(self) -> Iterator[tuple[int, Frame | None]]: ...

    def close(self) -> None: ...


def open_source(spec: str | int | Path) -> FrameSource:
    """Open a folder, video file, camera index or stream URL (see the module docstring for the rules)."""
    text = str(spec).strip()
    if not text:
        raise InputError("empty source; give a video file, a folder of frames, a camera index or a stream URL")
    if "://" in text:
        return _open_capture(text, "stream", text)
    path = Path(text)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file():
        return _open_capture(str(path), "video", text)
    if text.isdigit():
        return _open_capture(int(text), "camera", text)
    raise InputError(f"source not found: {text} (not a file, folder, camera index or URL)")
