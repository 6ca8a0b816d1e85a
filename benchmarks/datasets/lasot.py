"""LaSOT test set (280 videos, protocol II) and its 150-video extension subset.

Layout: ``<class>/<class>-<n>/groundtruth.txt`` (comma), ``full_occlusion.txt`` and ``out_of_view.txt``
(comma-separated 0/1 flags on one line), frames ``img/%08d.jpg`` numbered 1..#rows. The target counts as
visible where it is neither fully occluded nor out of view. Attribute flags (14 per video) come from the
LaSOT toolkit's ``annos/att/<name>.txt``; they are looked up in ``<root>/att/`` and ``<root>/annos/att/``.
The extension subset scores under its own tag, so the LaSOT-only rules (strict lengths, invisible frames
as centre-error failures) do not apply to it, as in PyTracking.
"""

from __future__ import annotations

from pathlib import Path

from grm.benchmarks.datasets.base import Dataset, Sequence, numbered_frames, visible_from_flags
from grm.benchmarks.tables import name_list
from grm.benchmarks.textio import read_flags
from grm.runtime.errors import DatasetError


class LaSOT(Dataset):
    name = "lasot"
    tag = "lasot"
    list_file = "lasot.txt"
    layout = "<class>/<class>-<n>/groundtruth.txt, full_occlusion.txt, out_of_view.txt, img/%08d.jpg"
    attribute_set = "lasot"

    def _all_names(self) -> list[str]:
        return list(name_list(self.list_file))

    def _folder(self, name: str) -> Path:
        return self.root / name.rsplit("-", 1)[0] / name

    def _annotation_path(self, name: str) -> Path:
        return self._folder(name) / "groundtruth.txt"

    def _attribute_path(self, name: str) -> Path | None:
        for folder in (self.root / "att", self.root / "annos" / "att"):
            if (folder / f"{name}.txt").is_file():
                return folder / f"{name}.txt"
        return None

    def load(self, name: str) -> Sequence:
        if name not in name_list(self.list_file):
            raise DatasetError(f"{self.name}: '{name}' is not one of the {len(self._all_names())} sequences")
        folder = self._folder(name)
        gt = self._read_gt(self._annotation_path(name), name)
        occlusion = read_flags(self._require(folder / "full_occlusion.txt", f"occlusion flags of {name}"))
        out_of_view = read_flags(self._require(folder / "out_of_view.txt", f"out-of-view flags of {name}"))
        visible = visible_from_flags(occlusion, out_of_view, len(gt), str(folder))
        frames = numbered_frames(folder / "img", range(1, len(gt) + 1), "{:08d}.jpg")
        return Sequence(name, frames, self.tag, gt, visible=visible, object_class=name.rsplit("-", 1)[0])


class LaSOTExtension(LaSOT):
    name = "lasot_ext"
    tag = "lasot_extension_subset"
    list_file = "lasot_ext.txt"
