"""UAV123 and UAV20L (Mueller et al., ECCV 2016).

Layout: ``anno/UAV123/<name>.txt`` (comma separated, NaN rows where the target is absent),
``anno/UAV123/att/<name>.txt`` (12 attribute flags), frames ``data_seq/UAV123/<video>/%06d.jpg``.
UAV123 cuts long videos into sub-sequences by frame range (bird1_1 = frames 1-253, bird1_2 = 775-1477, ...);
ranges may overlap and the gaps between them are not evaluated. UAV20L evaluates 20 whole videos with
annotations in ``anno/UAV20L/``. Sequence names carry the ``uav_`` prefix of the PyTracking runner; result
files named without it (UAV toolkit style) are found too.
"""

from __future__ import annotations

import logging
from pathlib import Path

from grm.benchmarks.datasets.base import Dataset, Sequence, numbered_frames
from grm.benchmarks.tables import RangeEntry, uav_table
from grm.runtime.errors import DatasetError

log = logging.getLogger(__name__)
PREFIX = "uav_"


class UAV123(Dataset):
    name = "uav"
    tag = "uav"
    anno_dir = "anno/UAV123"
    table_file = "uav123.txt"
    layout = "anno/UAV123/<name>.txt and data_seq/UAV123/<video>/%06d.jpg"
    attribute_set = "uav"

    def _check_layout(self) -> None:
        if not (self.root / self.anno_dir).is_dir():
            raise DatasetError(
                f"{self.name}: {self.root / self.anno_dir} not found; expected {self.layout} under {self.root}"
            )

    def _entries(self) -> dict[str, RangeEntry]:
        return {PREFIX + e.name: e for e in uav_table(self.table_file)}

    def _all_names(self) -> list[str]:
        return list(self._entries())

    def _annotation_path(self, name: str) -> Path:
        return self.root / self.anno_dir / f"{self._entry(name).name}.txt"

    def _attribute_path(self, name: str) -> Path | None:
        return self.root / self.anno_dir / "att" / f"{self._entry(name).name}.txt"

    def _entry(self, name: str) -> RangeEntry:
        entry = self._entries().get(name)
        if entry is None:
            raise DatasetError(f"{self.name}: unknown sequence '{name}'")
        return entry

    def load(self, name: str) -> Sequence:
        entry = self._entry(name)
        gt = self._read_gt(self._annotation_path(name), name)
        expected = entry.end - entry.start + 1
        if len(gt) != expected:
            log.warning("%s: %s has %d rows for frames %d-%d", self.name, name, len(gt), entry.start, entry.end)
        folder = self.root / "data_seq" / "UAV123" / entry.video
        frames = numbered_frames(folder, range(entry.start, entry.end + 1), "{:06d}.jpg")
        return Sequence(name, frames, self.tag, gt, object_class=entry.object_class, aliases=(entry.name,))


class UAV20L(UAV123):
    name = "uav20l"
    anno_dir = "anno/UAV20L"
    table_file = "uav20l.txt"
    layout = "anno/UAV20L/<name>.txt and data_seq/UAV123/<video>/%06d.jpg"
    attribute_set = "uav"
