"""Need for Speed, 30 fps version in the PyTracking layout (100 videos).

Layout: ``anno/nfs_<Seq>.txt`` (tab separated, already converted to 30 fps) and
``sequences/<Seq>/%05d.jpg`` numbered from 1. No subsampling happens here: the tree must already hold the
30 fps frames. Sequence names carry the ``nfs_`` prefix of the PyTracking runner.
"""

from __future__ import annotations

from pathlib import Path

from grm.benchmarks.datasets.base import Dataset, Sequence, numbered_frames
from grm.benchmarks.tables import RangeEntry, nfs_table
from grm.runtime.errors import DatasetError

PREFIX = "nfs_"


class NfS(Dataset):
    name = "nfs"
    tag = "nfs"
    layout = "anno/nfs_<Seq>.txt (30 fps, tab separated) and sequences/<Seq>/%05d.jpg"

    def _check_layout(self) -> None:
        if not (self.root / "anno").is_dir():
            raise DatasetError(f"{self.name}: {self.root / 'anno'} not found; expected {self.layout} under {self.root}")

    def _entries(self) -> dict[str, RangeEntry]:
        return {PREFIX + e.name: e for e in nfs_table()}

    def _all_names(self) -> list[str]:
        return list(self._entries())

    def _annotation_path(self, name: str) -> Path:
        return self.root / "anno" / f"{name}.txt"

    def load(self, name: str) -> Sequence:
        entry = self._entries().get(name)
        if entry is None:
            raise DatasetError(f"{self.name}: unknown sequence '{name}'")
        gt = self._read_gt(self._annotation_path(name), name)
        frames = numbered_frames(self.root / "sequences" / entry.video, range(1, entry.end + 1), "{:05d}.jpg")
        return Sequence(name, frames, self.tag, gt, object_class=entry.object_class, aliases=(entry.name,))
