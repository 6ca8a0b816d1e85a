"""GOT-10k test and validation splits.

Layout (root = the GOT-10k folder holding ``test/`` and ``val/``, or the split folder itself):
``<split>/list.txt`` names the sequences, ``<split>/<seq>/groundtruth.txt`` (comma; the test split has only
the first frame's box), frames ``<split>/<seq>/*.jpg`` sorted by integer stem. The validation split also
has ``cover.label`` (visible-ratio class per frame, 0 = absent) and ``meta_info.ini`` (``resolution: (w, h)``),
which the GOT-10k toolkit uses for AO/SR. Without ``cover.label`` every frame counts. Without a resolution in
``meta_info.ini`` the image size is read from the sequence's first frame (logged once per dataset), so the
scores do not change; with neither, loading fails naming the missing file.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import cv2

from grm.benchmarks.datasets.base import Dataset, Sequence, sorted_by_stem
from grm.benchmarks.textio import read_flags
from grm.runtime.errors import DatasetError

log = logging.getLogger(__name__)
META_INFO = "meta_info.ini"


class GOT10kTest(Dataset):
    name = "got10k_test"
    tag = "got10k"
    split = "test"
    has_ground_truth = False
    layout = "test/list.txt, test/<seq>/groundtruth.txt (first frame), test/<seq>/*.jpg"

    def _check_layout(self) -> None:
        self._split_root()

    def _split_root(self) -> Path:
        if (self.root / self.split / "list.txt").is_file():
            return self.root / self.split
        other_split = self.root.name.lower() in ("train", "val", "test") and self.root.name.lower() != self.split
        if (self.root / "list.txt").is_file() and not other_split:
            return self.root
        raise DatasetError(f"{self.name}: no {self.split}/list.txt under {self.root}; expected {self.layout}")

    def _all_names(self) -> list[str]:
        text = (self._split_root() / "list.txt").read_text()
        return [line.strip() for line in text.splitlines() if line.strip()]

    def _annotation_path(self, name: str) -> Path:
        return self._split_root() / name / "groundtruth.txt"

    def load(self, name: str) -> Sequence:
        folder = self._split_root() / name
        gt = self._read_gt(self._annotation_path(name), name)
        return Sequence(name, sorted_by_stem(folder), self.tag, gt)


class GOT10kVal(GOT10kTest):
    name = "got10k_val"
    split = "val"
    has_ground_truth = True
    layout = "val/list.txt, val/<seq>/groundtruth.txt, cover.label, meta_info.ini, val/<seq>/*.jpg"
    _told_frame_resolution = False  # the fallback to the first frame is logged once per dataset

    def load(self, name: str) -> Sequence:
        seq = super().load(name)
        folder = self._split_root() / name
        cover_path = folder / "cover.label"
        cover = read_flags(cover_path) if cover_path.is_file() else None
        if cover is not None and len(cover) != len(seq.gt):
            raise DatasetError(f"{self.name}: {cover_path} has {len(cover)} labels for {len(seq.gt)} boxes")
        resolution = _resolution(folder / META_INFO) or self._frame_resolution(folder / META_INFO, seq)
        return Sequence(seq.name, seq.frames, seq.tag, seq.gt, cover=cover, resolution=resolution)

    def _frame_resolution(self, meta_path: Path, seq: Sequence) -> tuple[int, int]:
        """The (width, height) of the first frame, for a sequence whose ``meta_info.ini`` states none."""
        if not seq.frames:
            raise DatasetError(
                f"{self.name}: {meta_path} (with 'resolution: (w, h)') is missing and {meta_path.parent} has no "
                "frames to read the image size from; GOT-10k scores clip boxes to the image"
            )
        image = cv2.imread(str(seq.frames[0]), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise DatasetError(
                f"{self.name}: {meta_path} is missing and {seq.frames[0]} cannot be read for the image size"
            )
        if not self._told_frame_resolution:
            self._told_frame_resolution = True
            log.warning(
                "%s: no resolution in %s; image sizes are read from the first frame of each such sequence",
                self.name,
                meta_path,
            )
        return int(image.shape[1]), int(image.shape[0])


def _resolution(meta_path: Path) -> tuple[int, int] | None:
    """``resolution: (width, height)`` from a GOT-10k ``meta_info.ini``, or None when absent."""
    if not meta_path.is_file():
        return None
    for line in meta_path.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "resolution":
            try:
                width, height = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError, TypeError) as e:
                raise DatasetError(f"{meta_path}: cannot read resolution {value.strip()!r}") from e
            return int(width), int(height)
    return None
