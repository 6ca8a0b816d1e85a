"""AVisT (120 test videos in adverse visibility).

Layout: ``anno/<seq>.txt`` (**space** separated), ``full_occlusion/<seq>_full_occlusion.txt`` and
``out_of_view/<seq>_out_of_view.txt`` (comma-separated flags), frames ``sequences/<seq>/img_%05d.jpg``
numbered 1..#rows. Visibility as in LaSOT.
"""

from __future__ import annotations

from pathlib import Path

from grm.benchmarks.datasets.base import Dataset, Sequence, numbered_frames, visible_from_flags
from grm.benchmarks.tables import name_list
from grm.benchmarks.textio import read_flags
from grm.runtime.errors import DatasetError


class AVisT(Dataset):
    name = "avist"
    tag = "avist"
    layout = (
        "anno/<seq>.txt, full_occlusion/<seq>_full_occlusion.txt, out_of_view/<seq>_out_of_view.txt, "
        "sequences/<seq>/img_%05d.jpg"
    )

    def _check_layout(self) -> None:
        for sub in ("anno", "full_occlusion", "out_of_view"):
            if not (self.root / sub).is_dir():
                raise DatasetError(
                    f"{self.name}: {self.root / sub} not found; expected {self.layout} under {self.root}"
                )

    def _all_names(self) -> list[str]:
        return list(name_list("avist.txt"))

    def _annotation_path(self, name: str) -> Path:
        return self.root / "anno" / f"{name}.txt"

    def load(self, name: str) -> Sequence:
        if name not in name_list("avist.txt"):
            raise DatasetError(f"{self.name}: '{name}' is not one of the 120 AVisT sequences")
        gt = self._read_gt(self._annotation_path(name), name)
        occlusion = read_flags(
            self._require(self.root / "full_occlusion" / f"{name}_full_occlusion.txt", "occlusion flags")
        )
        out_of_view = read_flags(
            self._require(self.root / "out_of_view" / f"{name}_out_of_view.txt", "out-of-view flags")
        )
        visible = visible_from_flags(occlusion, out_of_view, len(gt), f"{self.name}/{name}")
        frames = numbered_frames(self.root / "sequences" / name, range(1, len(gt) + 1), "img_{:05d}.jpg")
        return Sequence(name, frames, self.tag, gt, visible=visible)
