"""Result folders: finding, labelling and merging the raw per-sequence result files.

A result folder holds ``<seq>.txt`` (one x,y,w,h row per frame, any separator, floats or truncated ints)
and optionally ``<seq>_time.txt``. Folders written by ``grm-bench`` also hold ``run_manifest.json``, whose
``label`` names the tracker; folders given with the same label (e.g. shards of one run copied back from
several machines) are merged into one result set. Other folders are labelled ``LABEL=DIR`` on the command
line, else by their folder name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from grm.benchmarks.naming import find_result, name_key, result_files
from grm.benchmarks.textio import read_boxes, read_flags
from grm.runtime.errors import InputError

MANIFEST = "run_manifest.json"


@dataclass
class ResultSet:
    """One tracker's results, possibly spread over several folders (shards)."""

    label: str
    folders: list[Path] = field(default_factory=list)
    _files: dict[str, Path] | None = None

    def files(self) -> dict[str, Path]:
        """Result files by name key over all folders; a sequence present twice must have equal boxes."""
        if self._files is None:
            merged: dict[str, Path] = {}
            for folder in self.folders:
                for key, path in result_files(folder).items():
                    if key in merged and not np.array_equal(read_boxes(merged[key]), read_boxes(path), equal_nan=True):
                        raise InputError(
                            f"{self.label}: {merged[key]} and {path} hold different results for one sequence"
                        )
                    merged.setdefault(key, path)
            self._files = merged
        return self._files

    def find(self, name: str, aliases: tuple[str, ...] = ()) -> Path | None:
        return find_result(self.files(), name, aliases)

    def times(self, result_path: Path) -> NDArray[np.float64] | None:
        """Per-frame seconds from ``<seq>_time.txt`` beside a result file (first value = initialisation)."""
        path = result_path.with_name(result_path.stem + "_time.txt")
        return read_flags(path) if path.is_file() else None


def read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON: {e}") from e


def _default_label(folder: Path, dataset_names: set[str]) -> str:
    manifest = read_manifest(folder)
    if manifest and manifest.get("label"):
        return str(manifest["label"])
    if name_key(folder.name) in dataset_names and folder.parent.name:
        return folder.parent.name
    return folder.name


def result_sets(specs: list[str], dataset_names: set[str] | None = None) -> list[ResultSet]:
    """Result sets from ``DIR`` or ``LABEL=DIR`` strings, merged by label in first-seen order."""
    names = {name_key(n) for n in (dataset_names or set())}
    sets: dict[str, ResultSet] = {}
    for spec in specs:
        label, sep, path = spec.partition("=")
        if Path(spec).is_dir():
            label, sep, path = "", "", spec
        folder = Path(path if sep else spec)
        if not folder.is_dir():
            raise InputError(f"results folder not found: {folder}")
        label = label if sep else _default_label(folder, names)
        sets.setdefault(label, ResultSet(label)).folders.append(folder)
    if not sets:
        raise InputError("no results folder given; pass --results DIR (repeat for several trackers)")
    return list(sets.values())
