"""What every benchmark dataset loader provides: a root folder, sequence names, and sequences.

A :class:`Sequence` carries what tracking and scoring need: the frame files in tracking order, the ground
truth (xywh pixels, 1-based OTB-style convention kept as in the files), the dataset tag that selects the
scoring rules, and optional visibility flags. Loading a sequence reads only annotation files, so analysis
works on a tree whose image folders are empty or absent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from grm.benchmarks.tables import attribute_names
from grm.benchmarks.textio import read_boxes, read_flags
from grm.runtime.errors import DatasetError, InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sequence:
    """One evaluation sequence.

    Attributes:
        name: result-file stem (``<name>.txt``), e.g. ``uav_bike1`` or ``Jogging_1``.
        frames: frame files in tracking order; they need not exist for analysis.
        tag: scoring-rule tag (``uav``, ``lasot``, ``avist``, ``otb``, ``nfs``, ``got10k``, ...).
        gt: ground truth, shape (N, 4) xywh pixels; only row 0 for test sets without public labels.
        visible: per-frame target visibility (LaSOT, AVisT), else None.
        aliases: other stems a results folder may use for this sequence (toolkit spellings).
        leading_frames: frames of the video before the first evaluated one; a result file that starts
            at video frame 1 has this many extra leading rows (OTB David, BlurCar1, Tiger1).
        cover: GOT-10k per-frame visible ratio class (0 = target absent), else None.
        resolution: (width, height) of the frames where the dataset states it (GOT-10k), else None.
    """

    name: str
    frames: tuple[Path, ...]
    tag: str
    gt: NDArray[np.float64]
    visible: NDArray[np.bool_] | None = None
    object_class: str = ""
    aliases: tuple[str, ...] = ()
    leading_frames: int = 0
    cover: NDArray[np.float64] | None = None
    resolution: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.gt)


class Dataset:
    """Base class: subclasses set the class attributes and implement ``_all_names`` and ``load``.

    Args:
        root: dataset root folder (layout in :attr:`layout`).
        partial: keep only the sequences whose annotation is present instead of failing on the first
            missing one (numbers are then not comparable to published tables).
    """

    name: str = ""
    tag: str = ""
    layout: str = ""
    has_ground_truth: bool = True
    attribute_set: str | None = None

    def __init__(self, root: str | Path, partial: bool = False) -> None:
        self.root = Path(root)
        self.partial = partial
        self._names: list[str] | None = None
        if not self.root.is_dir():
            raise DatasetError(f"{self.name}: dataset root {self.root} is not a folder; expected {self.layout}")
        self._check_layout()

    def _check_layout(self) -> None:
        """Fail early with the expected layout when the root does not look like this dataset."""

    def _all_names(self) -> list[str]:
        raise NotImplementedError

    def _annotation_path(self, name: str) -> Path:
        raise NotImplementedError

    def is_present(self, name: str) -> bool:
        """The sequence's annotation file exists under the root (its frames are not checked)."""
        return self._annotation_path(name).is_file()

    def load(self, name: str) -> Sequence:
        raise NotImplementedError

    def sequence_names(self) -> list[str]:
        """Sequence names in the official order; with ``partial`` only those whose annotation exists."""
        if self._names is not None:
            return list(self._names)
        names = self._all_names()
        if self.partial:
            present = [n for n in names if self.is_present(n)]
            if not present:
                raise DatasetError(
                    f"{self.name}: no sequence annotations found under {self.root}; expected {self.layout}"
                )
            if len(present) < len(names):
                log.warning("%s: %d of %d sequences present under %s", self.name, len(present), len(names), self.root)
            names = present
        self._names = names
        return list(names)

    def sequences(self) -> list[Sequence]:
        return [self.load(n) for n in self.sequence_names()]

    def attribute_table(self) -> tuple[list[str], dict[str, NDArray[np.bool_]]] | None:
        """(short attribute names, flags per sequence) when the tree has attribute files, else None."""
        if self.attribute_set is None:
            return None
        names = attribute_names(self.attribute_set)["short"]
        flags = {}
        for seq in self.sequence_names():
            path = self._attribute_path(seq)
            if path is None or not path.is_file():
                return None
            values = read_flags(path)
            if len(values) != len(names):
                raise DatasetError(
                    f"{path}: expected {len(names)} attribute flags ({', '.join(names)}), found {len(values)}"
                )
            flags[seq] = values > 0
        return names, flags

    def _attribute_path(self, name: str) -> Path | None:
        return None

    def _require(self, path: Path, what: str) -> Path:
        if not path.is_file():
            raise DatasetError(
                f"{self.name}: {what} not found: {path} (expected layout under {self.root}: {self.layout})"
            )
        return path

    def _read_gt(self, path: Path, name: str) -> NDArray[np.float64]:
        self._require(path, f"annotation of {name}")
        try:
            gt = read_boxes(path)
        except InputError as e:
            raise DatasetError(f"{self.name}: malformed annotation: {e}") from e
        if len(gt) == 0:
            raise DatasetError(f"{self.name}: annotation {path} is empty")
        return gt


def env_var_for(dataset: str) -> str:
    """Environment variable naming a dataset root, e.g. ``GRM_UAV_ROOT`` or ``GRM_GOT10K_TEST_ROOT``."""
    return f"GRM_{dataset.upper()}_ROOT"


def resolve_root(dataset: str, root: str | Path | None, layout: str) -> Path:
    """The dataset root from the option, else from the dataset's environment variable."""
    if root:
        return Path(root)
    value = os.environ.get(env_var_for(dataset))
    if value:
        return Path(value)
    raise DatasetError(
        f"{dataset}: no dataset root given; pass --data-root DIR or set {env_var_for(dataset)} (layout: {layout})"
    )


def visible_from_flags(
    occlusion: NDArray[np.float64], out_of_view: NDArray[np.float64], n: int, where: str
) -> NDArray[np.bool_]:
    """Target visible = not fully occluded and not out of view (LaSOT, AVisT)."""
    if len(occlusion) != n or len(out_of_view) != n:
        raise DatasetError(
            f"{where}: {len(occlusion)} occlusion and {len(out_of_view)} out-of-view flags for {n} annotated frames"
        )
    return np.logical_and(occlusion == 0, out_of_view == 0)


def numbered_frames(folder: Path, numbers: SequenceABC[int], pattern: str) -> tuple[Path, ...]:
    """Frame paths ``folder / pattern.format(n)`` for each frame number."""
    return tuple(folder / pattern.format(n) for n in numbers)


def sorted_by_stem(folder: Path, ext: str = ".jpg") -> tuple[Path, ...]:
    """Frame files sorted by their integer stem (GOT-10k, TrackingNet); empty when the folder is absent."""
    if not folder.is_dir():
        return ()
    files = [p for p in folder.iterdir() if p.suffix.lower() == ext and p.stem.isdigit()]
    return tuple(sorted(files, key=lambda p: int(p.stem)))
