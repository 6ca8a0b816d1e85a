"""Real sequences to calibrate and evaluate on: OTB-style frame folders and videos with a box file.

Accepted ``--data`` paths (boxes are xywh in image pixels, one row per frame, comma/tab/space separated):

* a sequence folder: ``groundtruth_rect.txt`` (preferred) or ``groundtruth.txt`` plus frames in ``img/`` or in
  the folder itself. 8-value rows (VOT polygons) become their enclosing axis-aligned box;
* a folder of such sequence folders, searched two levels deep (``OTB/<seq>``, ``LaSOT/<class>/<seq>``);
* a video file with a box file beside it (``clip.mp4`` + ``clip.txt``): the first row initialises the
  tracker, further rows (if any) are ground truth for the accuracy report.

Sequences are sorted by name so sampling and the held-out split are deterministic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.benchmarks.textio import read_rows
from grm.runtime.errors import InputError
from grm.runtime.sources import IMAGE_SUFFIXES, open_source

GT_NAMES = ("groundtruth_rect.txt", "groundtruth.txt")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


@dataclass(frozen=True, eq=False)
class TrackSequence:
    """One sequence: where its frames are and its boxes (N, 4) xywh pixels (NaN rows = no annotation).

    Attributes:
        name: unique name (folder or video stem).
        source: frame folder or video file, as :func:`grm.runtime.sources.open_source` takes it.
        boxes: ground truth; row 0 initialises the tracker, later rows are only used for accuracy.
        num_frames: frames the tracker can use (frames known to exist).
        box_file: the file ``boxes`` came from.
    """

    name: str
    source: Path
    boxes: NDArray[np.float64]
    num_frames: int
    box_file: Path

    @property
    def has_ground_truth(self) -> bool:
        """True when every frame has a box row (needed for AUC/precision)."""
        return len(self.boxes) >= self.num_frames

    def fingerprint(self) -> str:
        """Hash of the box file and the frame list (names and sizes), for cache manifests."""
        digest = hashlib.sha256(self.box_file.read_bytes())
        digest.update(str(self.num_frames).encode())
        if self.source.is_dir():
            for path in _frame_files(self.source):
                digest.update(f"{path.name}:{path.stat().st_size}".encode())
        else:
            digest.update(f"{self.source.name}:{self.source.stat().st_size}".encode())
        return digest.hexdigest()

    def frames(self, limit: int | None = None) -> Iterator[tuple[int, NDArray[np.uint8]]]:
        """Yield ``(index, RGB frame)`` up to ``limit`` frames; an undecodable frame raises InputError."""
        source = open_source(self.source)
        try:
            for index, frame in source:
                if limit is not None and index >= limit:
                    break
                if frame is None:
                    raise InputError(
                        f"{self.name}: frame {index} of {self.source} cannot be decoded; fix or remove the file, "
                        "or leave this sequence out of --data"
                    )
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            source.close()


def read_box_file(path: Path) -> NDArray[np.float64]:
    """Rows of 4 (xywh) or 8 (polygon -> enclosing xywh) numbers; empty lines skipped, NaN kept."""
    rows = read_rows(path)
    for lineno, values in rows:
        if len(values) not in (4, 8):
            raise InputError(f"{path}:{lineno}: expected 4 values x,y,w,h (or an 8-value polygon), got {len(values)}")
    if not rows:
        raise InputError(f"box file {path} is empty; it needs at least the first frame's x,y,w,h")
    return np.asarray([v if len(v) == 4 else _polygon_to_xywh(v) for _, v in rows], dtype=np.float64)


def _polygon_to_xywh(values: Sequence[float]) -> list[float]:
    xs, ys = values[0::2], values[1::2]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _frame_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def _folder_sequence(folder: Path) -> TrackSequence | None:
    box_file = next((folder / n for n in GT_NAMES if (folder / n).is_file()), None)
    if box_file is None:
        return None
    frames_dir = folder / "img" if (folder / "img").is_dir() else folder
    count = len(_frame_files(frames_dir))
    if count == 0:
        raise InputError(f"sequence {folder} has {box_file.name} but no image files in {frames_dir}")
    return TrackSequence(folder.name, frames_dir, read_box_file(box_file), count, box_file)


def _video_sequence(video: Path) -> TrackSequence:
    box_file = video.with_suffix(".txt")
    if not box_file.is_file():
        raise InputError(f"video {video} needs a box file {box_file.name} beside it (first line: x,y,w,h of frame 0)")
    capture = cv2.VideoCapture(str(video))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if capture.isOpened() else 0
    capture.release()
    if count <= 1:
        raise InputError(f"video {video} cannot be read by OpenCV or has fewer than 2 frames")
    return TrackSequence(video.stem, video, read_box_file(box_file), count, box_file)


def _sequences_under(root: Path, depth: int = 2) -> list[TrackSequence]:
    own = _folder_sequence(root)
    if own is not None:
        return [own]
    found: list[TrackSequence] = []
    if depth == 0:
        return found
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        found.extend(_sequences_under(child, depth - 1))
    for video in sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()):
        if video.with_suffix(".txt").is_file():
            found.append(_video_sequence(video))
    return found


def discover(paths: Sequence[str | Path]) -> list[TrackSequence]:
    """All sequences under the ``--data`` paths, sorted by name; names must be unique."""
    if not paths:
        raise InputError("no --data given; pass a sequence folder, a folder of sequences or a video with a box file")
    found: list[TrackSequence] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            found.append(_video_sequence(path))
        elif path.is_dir():
            seqs = _sequences_under(path)
            if not seqs:
                raise InputError(
                    f"no sequences in {path}: expected folders with {' or '.join(GT_NAMES)} and frames (in img/ or "
                    "beside it), or videos with a .txt box file"
                )
            found.extend(seqs)
        else:
            raise InputError(f"--data {path} does not exist or is not a folder or video ({', '.join(VIDEO_SUFFIXES)})")
    names = [s.name for s in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"sequence names must be unique across --data; duplicated: {', '.join(duplicates)}")
    return sorted(found, key=lambda s: s.name.lower())


def split_holdout(
    sequences: Sequence[TrackSequence], holdout: Sequence[str] | None
) -> tuple[list[TrackSequence], list[TrackSequence]]:
    """(calibration, held-out) sequences; default holds out every second sequence in name order."""
    if holdout:
        known = {s.name for s in sequences}
        unknown = [n for n in holdout if n not in known]
        if unknown:
            raise InputError(
                f"--holdout {', '.join(unknown)} not among the sequences found: {', '.join(sorted(known))}"
            )
        names = set(holdout)
    else:
        names = {s.name for s in sequences[1::2]}
    held = [s for s in sequences if s.name in names]
    calib = [s for s in sequences if s.name not in names]
    if not calib:
        raise InputError("every sequence is held out; leave at least one for calibration")
    if not held:
        raise InputError("no sequence left for the accuracy report; give at least two sequences in --data")
    return calib, held
