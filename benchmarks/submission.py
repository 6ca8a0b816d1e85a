"""Evaluation-server submissions for GOT-10k test and TrackingNet, built from raw results.

- GOT-10k: ``got10k_submit.zip`` holding ``<seq>/<seq>_001.txt`` (integer x,y,w,h, comma) and
  ``<seq>/<seq>_time.txt`` (seconds per frame) for every sequence.
- TrackingNet: ``trackingnet_submit.zip`` holding ``<seq>.txt`` (integer x,y,w,h, comma) flat.

Boxes are truncated toward zero as the official runner's ``astype(int)``. All-boxes dumps
(``*all_boxes*``) are skipped and ``<seq>_time.txt`` are timing files. The official packing scripts skip
any name containing ``all`` or ``time``, which would also drop a sequence whose name contains them; with
``--data-root`` the pack is checked complete instead. Unlike those scripts, nothing is deleted: the zip is
written atomically beside the results and the raw result folder stays as it was.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from grm.benchmarks.datasets import Dataset
from grm.benchmarks.textio import format_ints, read_boxes
from grm.runtime.atomic import atomic_path
from grm.runtime.errors import InputError

FORMATS = ("got10k_test", "trackingnet")


def _result_files(folder: Path) -> dict[str, Path]:
    files = {}
    for path in sorted(folder.glob("*.txt")):
        if "all_boxes" in path.stem or path.stem.endswith("_time") or path.name.startswith("."):
            continue
        files[path.stem] = path
    if not files:
        raise InputError(f"no result files (<seq>.txt) in {folder}")
    return files


def _check_complete(files: dict[str, Path], dataset: Dataset | None) -> None:
    """With the dataset at hand, every sequence must have a result with one row per frame."""
    if dataset is None:
        return
    missing = [n for n in dataset.sequence_names() if n not in files]
    if missing:
        raise InputError(
            f"{len(missing)} sequences have no result (e.g. {', '.join(missing[:3])}); finish the run first"
        )
    for name in dataset.sequence_names():
        frames = len(dataset.load(name).frames)
        rows = len(read_boxes(files[name]))
        if frames and rows != frames:
            raise InputError(f"{files[name]} has {rows} rows for {frames} frames; re-run that sequence")


def pack(dataset_name: str, results: str | Path, out: str | Path | None = None, dataset: Dataset | None = None) -> Path:
    """Build the server zip for ``got10k_test`` or ``trackingnet`` from a results folder; returns its path."""
    folder = Path(results)
    if dataset_name not in FORMATS:
        raise InputError(f"no server submission format for '{dataset_name}'; use one of {', '.join(FORMATS)}")
    if not folder.is_dir():
        raise InputError(f"results folder not found: {folder}")
    files = _result_files(folder)
    _check_complete(files, dataset)
    stem = "got10k_submit" if dataset_name == "got10k_test" else "trackingnet_submit"
    target = Path(out) if out else folder / f"{stem}.zip"
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in files.items():
            text = format_ints(read_boxes(path))
            if dataset_name == "trackingnet":
                zf.writestr(f"{name}.txt", text)
                continue
            zf.writestr(f"{name}/{name}_001.txt", text)
            time_file = folder / f"{name}_time.txt"
            if time_file.is_file():
                zf.writestr(f"{name}/{name}_time.txt", time_file.read_text())
    return target
