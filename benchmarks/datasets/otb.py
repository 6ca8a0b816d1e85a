"""OTB-100 (Wu, Lim and Yang, TPAMI 2015).

Two layouts are read:

- the dataset download: ``<Video>/groundtruth_rect.txt`` (or ``groundtruth_rect.<k>.txt`` for videos with
  two targets) and frames ``<Video>/img/%04d.jpg``;
- the OTB toolkit's flat annotation folder: ``<name>.txt`` per sequence in the root (or in ``anno/``), with
  attribute flags in ``att/<name>.txt``. Toolkit names differ in case and separators (``jogging-1``,
  ``Human4.2``, ``Skating2.1``, ``carDark``); they are matched case-insensitively with ``-``, ``.``, ``_``
  treated alike.

Quirks, kept as data in ``otb.txt``: BlurCar1/3/4 and David start at frames 247, 3, 18 and 300 (their
annotation covers only the evaluated frames); Board's frames have 5 digits and KiteSurf's are PNG;
Tiger1 omits its first 5 frames and annotation rows; Jogging and Skating2 give two sequences each
(``Jogging_1``/``Jogging_2`` ...); Human4 is evaluated on its second target only (``Human4_2``).
"""

from __future__ import annotations

from pathlib import Path

from grm.benchmarks.datasets.base import Dataset, Sequence, numbered_frames
from grm.benchmarks.naming import name_key
from grm.benchmarks.tables import OtbEntry, otb_table
from grm.runtime.errors import DatasetError


class OTB(Dataset):
    name = "otb"
    tag = "otb"
    layout = "<Video>/groundtruth_rect[.k].txt and <Video>/img/%04d.jpg, or the toolkit's flat <name>.txt files"
    attribute_set = "otb"

    def _check_layout(self) -> None:
        self._index = {p.name.lower(): p for p in self.root.iterdir()}
        self._flat_dir = self._find_flat_dir()
        self._flat = _flat_files(self._flat_dir) if self._flat_dir is not None else {}
        if self._flat_dir is None and not any(e.video.lower() in self._index for e in otb_table()):
            raise DatasetError(
                f"{self.name}: no OTB video folders or annotation files under {self.root}; expected {self.layout}"
            )

    def _find_flat_dir(self) -> Path | None:
        for folder in (self.root, self.root / "anno"):
            if folder.is_dir() and _flat_files(folder):
                return folder
        return None

    def _entries(self) -> dict[str, OtbEntry]:
        return {e.name: e for e in otb_table()}

    def _entry(self, name: str) -> OtbEntry:
        entry = self._entries().get(name)
        if entry is None:
            raise DatasetError(f"{self.name}: unknown sequence '{name}'")
        return entry

    def _all_names(self) -> list[str]:
        return list(self._entries())

    def _video_dir(self, entry: OtbEntry) -> Path:
        return self._index.get(entry.video.lower(), self.root / entry.video)

    def _annotation_path(self, name: str) -> Path:
        entry = self._entry(name)
        if self._flat_dir is not None:
            found = _lookup(self._flat, name, _aliases(entry))
            return found if found is not None else self._flat_dir / f"{name}.txt"
        return self._video_dir(entry) / entry.anno_file

    def _attribute_path(self, name: str) -> Path | None:
        for folder in (self.root / "att", self.root / "anno" / "att"):
            if folder.is_dir():
                return _lookup(_flat_files(folder), name, _aliases(self._entry(name)))
        return None

    def load(self, name: str) -> Sequence:
        entry = self._entry(name)
        gt = self._read_gt(self._annotation_path(name), name)
        if len(gt) <= entry.omit:
            raise DatasetError(
                f"{self.name}: annotation of {name} has {len(gt)} rows; at least {entry.omit + 1} needed"
            )
        numbers = range(entry.start + entry.omit, entry.end + 1)
        pattern = "{:0" + str(entry.digits) + "d}." + entry.ext
        frames = numbered_frames(self._video_dir(entry) / "img", numbers, pattern)
        return Sequence(
            name,
            frames,
            self.tag,
            gt[entry.omit :],
            object_class=entry.object_class,
            aliases=_aliases(entry),
            leading_frames=entry.start - 1 + entry.omit,
        )


def _aliases(entry: OtbEntry) -> tuple[str, ...]:
    """Other names a toolkit may use: the bare video name when only one of its targets is evaluated (Human4)."""
    single = sum(e.video == entry.video for e in otb_table()) == 1
    return (entry.video,) if entry.name != entry.video and single else ()


def _flat_files(folder: Path) -> dict[str, Path]:
    return {name_key(p.stem): p for p in folder.glob("*.txt")}


def _lookup(files: dict[str, Path], name: str, aliases: tuple[str, ...]) -> Path | None:
    for candidate in (name, *aliases):
        path = files.get(name_key(candidate))
        if path is not None:
            return path
    return None
