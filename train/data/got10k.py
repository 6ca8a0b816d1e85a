"""GOT-10k training data (docs/training.md, data sources): ``<root>/list.txt`` and ``<root>/<seq>/%08d.jpg`` (1-based).

``split="train"`` uses every sequence of ``list.txt`` (the official ``got10k_train_split.txt`` lists all
9335 indices 0..9334, i.e. the identity); ``split="vot_train"`` keeps the 7086 sequences whose indices
(into ``list.txt`` order) are in the packaged ``got10k_vot_train_split.txt``.
Visible frames: ``absence.label`` 0, ``cover.label`` > 0, and w, h > 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from grm.runtime.errors import DatasetError
from grm.train.data.base import SequenceInfo, VideoDataset, read_boxes, read_flags, read_rgb, require_dir, valid_size
from grm.train.data.splits import read_index_split

SPLITS = ("train", "vot_train")


def resolve_got10k_root(path: str | Path) -> Path:
    """Accept the GOT-10k folder itself or its parent: returns the folder that holds ``list.txt``."""
    path = Path(path)
    for candidate in (path, path / "train"):
        if (candidate / "list.txt").is_file():
            return candidate
    raise DatasetError(
        f"GOT-10k root {path} has no list.txt (looked in {path} and {path / 'train'}); "
        "point it at GOT-10k's train/ folder or write data with 'grm-train synth'"
    )


class Got10k(VideoDataset):
    """GOT-10k train sequences (or any folder in that layout, such as generated data)."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        if split not in SPLITS:
            raise DatasetError(f"unknown GOT-10k split {split!r}; known: {', '.join(SPLITS)}")
        self.root = resolve_got10k_root(require_dir(Path(root), "GOT-10k", "set --got10k-dir or GRM_GOT10K_DIR"))
        self.name = "GOT10K_vot_train" if split == "vot_train" else "GOT10K_train"
        names = [n.strip() for n in (self.root / "list.txt").read_text().splitlines() if n.strip()]
        if not names:
            raise DatasetError(f"{self.root / 'list.txt'} lists no sequences")
        if split == "vot_train":
            names = _select(names, read_index_split("got10k_vot_train_split.txt"), self.root)
        self.sequences = names

    def _read_info(self, seq: int) -> SequenceInfo:
        folder = self.root / self.sequences[seq]
        boxes = read_boxes(folder / "groundtruth.txt")
        absence = read_flags(folder / "absence.label", len(boxes))
        cover = read_flags(folder / "cover.label", len(boxes))
        visible = (absence == 0) & (cover > 0) & valid_size(boxes)
        return SequenceInfo(boxes=boxes, visible=visible)

    def frame(self, seq: int, frame_id: int) -> NDArray[np.uint8]:
        return read_rgb(self.root / self.sequences[seq] / f"{frame_id + 1:08d}.jpg")


def _select(names: list[str], indices: list[int], root: Path) -> list[str]:
    if max(indices) >= len(names):
        raise DatasetError(
            f"{root / 'list.txt'} lists {len(names)} sequences but the vot_train split indexes up to "
            f"{max(indices)}; use the full GOT-10k train folder (9335 sequences) or the GOT10K_train split"
        )
    return [names[i] for i in indices]
