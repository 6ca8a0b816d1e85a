"""LaSOT training split (docs/training.md, data sources): ``<root>/<cls>/<cls>-<n>/`` with ``img/%08d.jpg`` (1-based),
``groundtruth.txt`` (comma), ``full_occlusion.txt`` and ``out_of_view.txt`` (one comma-separated line).

The 1120 training sequences are the packaged ``lasot_train_split.txt``: per class, the 16 of the 20 videos
that are not in LaSOT's fixed 280-video test list. Visible frames: not fully occluded, not out of view,
w, h > 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from grm.runtime.errors import DatasetError
from grm.train.data.base import SequenceInfo, VideoDataset, read_boxes, read_flags, read_rgb, require_dir, valid_size
from grm.train.data.splits import read_name_split


class Lasot(VideoDataset):
    """LaSOT sequences of the training split (or an explicit list of ``<cls>-<n>`` names)."""

    name = "LASOT"

    def __init__(self, root: str | Path, sequences: Sequence[str] | None = None) -> None:
        self.root = require_dir(Path(root), "LaSOT", "set --lasot-dir or GRM_LASOT_DIR")
        self.sequences = list(sequences) if sequences is not None else list(read_name_split("lasot_train_split.txt"))
        missing = [s for s in self.sequences if not self._folder(s).is_dir()]
        if missing:
            raise DatasetError(
                f"LaSOT root {self.root} lacks {len(missing)} of {len(self.sequences)} training "
                f"sequences (first: {self._folder(missing[0])}); expected <root>/<class>/<class>-<n>/"
            )

    def _folder(self, name: str) -> Path:
        return self.root / name.rsplit("-", 1)[0] / name

    def _read_info(self, seq: int) -> SequenceInfo:
        folder = self._folder(self.sequences[seq])
        boxes = read_boxes(folder / "groundtruth.txt")
        occluded = read_flags(folder / "full_occlusion.txt", len(boxes), one_line=True)
        out_of_view = read_flags(folder / "out_of_view.txt", len(boxes), one_line=True)
        visible = (occluded == 0) & (out_of_view == 0) & valid_size(boxes)
        return SequenceInfo(boxes=boxes, visible=visible)

    def frame(self, seq: int, frame_id: int) -> NDArray[np.uint8]:
        return read_rgb(self._folder(self.sequences[seq]) / "img" / f"{frame_id + 1:08d}.jpg")
