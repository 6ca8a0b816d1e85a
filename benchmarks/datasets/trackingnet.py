"""TrackingNet test set (511 videos, scored by the evaluation server).

Layout (root = the TrackingNet folder holding ``TEST/``, or ``TEST`` itself): ``TEST/anno/<seq>.txt``
(comma; first frame only) and ``TEST/frames/<seq>/<i>.jpg`` sorted by integer stem. The sequence list is
the annotation folder's content, sorted by name (the official runner used unsorted ``os.listdir`` order,
which only changes the order of work).
"""

from __future__ import annotations

from pathlib import Path

from grm.benchmarks.datasets.base import Dataset, Sequence, sorted_by_stem
from grm.runtime.errors import DatasetError


class TrackingNet(Dataset):
    name = "trackingnet"
    tag = "trackingnet"
    has_ground_truth = False
    layout = "TEST/anno/<seq>.txt (first frame) and TEST/frames/<seq>/<i>.jpg"

    def _check_layout(self) -> None:
        self._test_root()

    def _test_root(self) -> Path:
        for folder in (self.root / "TEST", self.root):
            if (folder / "anno").is_dir():
                return folder
        raise DatasetError(f"{self.name}: no TEST/anno folder under {self.root}; expected {self.layout}")

    def _all_names(self) -> list[str]:
        return sorted(p.stem for p in (self._test_root() / "anno").glob("*.txt"))

    def _annotation_path(self, name: str) -> Path:
        return self._test_root() / "anno" / f"{name}.txt"

    def load(self, name: str) -> Sequence:
        gt = self._read_gt(self._annotation_path(name), name)
        return Sequence(name, sorted_by_stem(self._test_root() / "frames" / name), self.tag, gt)
