"""Evaluation-server submissions for GOT-10k test and TrackingNet, built from raw results.

- GOT-10k: ``got10k_submit.zip`` holding ``<seq>/<seq>_001.txt`` (integer x,y,w,h, comma) and
  ``<seq>/<seq>_time.txt`` (seconds per frame) for every sequence.
- TrackingNet: ``trackingnet_submit.zip`` holding ``<seq>.txt`` (integer x,y,w,h, comma) flat.

Boxes are truncated toward zero as the official runner's ``astype(int)``. Only sequences of the dataset
are packed: with the dataset at hand (``--data-root``, ``$GRM_<DATASET>_ROOT`` or the root recorded in the
folder's ``run_manifest.json``) its sequence list decides, and the pack is checked complete; without it
GOT-10k test names (``GOT-10k_Test_000001`` .. ``_000180``) decide, and TrackingNet needs the dataset. Every
other ``.txt`` file (besides a sequence's ``_time``, ``_all_boxes`` and ``_all_scores`` companions) is an
error that names it, or is skipped with a warning when asked. The official packing scripts instead pack
whatever is there, skipping any name containing ``all`` or ``time``. Nothing is deleted: the zip is written
atomically beside the results and the raw result folder stays as it was.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from grm.benchmarks.datasets import Dataset, env_var_for, open_dataset
from grm.benchmarks.naming import TIME_SUFFIX, name_key
from grm.benchmarks.results import read_manifest
from grm.benchmarks.textio import format_ints, read_boxes
from grm.runtime.atomic import atomic_path
from grm.runtime.errors import InputError

log = logging.getLogger(__name__)
FORMATS = ("got10k_test", "trackingnet")
GOT10K_TEST_SEQUENCES = 180  # GOT-10k_Test_000001 .. GOT-10k_Test_000180
COMPANION_SUFFIXES = (TIME_SUFFIX, "_all_boxes", "_all_scores")  # files runners write beside <seq>.txt
_GOT10K_TEST_NAME = re.compile(r"got-10k_test_(\d{6})", re.IGNORECASE)

SequenceName = Callable[[str], str | None]


def pack_dataset(dataset_name: str, results: str | Path, data_root: str | Path | None = None) -> Dataset | None:
    """The dataset whose sequences are packed, or None when none is known.

    Taken from ``data_root``, else ``$GRM_<DATASET>_ROOT``, else the root that the results folder's
    ``run_manifest.json`` records (when it was written for this dataset and the root exists here).
    """
    if data_root or os.environ.get(env_var_for(dataset_name)):
        return open_dataset(dataset_name, data_root)
    folder = Path(results)
    manifest = read_manifest(folder) if folder.is_dir() else None
    if not manifest or not manifest.get("data_root"):
        return None
    if manifest.get("dataset") not in (None, dataset_name):
        raise InputError(f"{folder} holds results for {manifest['dataset']}, not {dataset_name}")
    root = Path(str(manifest["data_root"]))
    return open_dataset(dataset_name, root) if root.is_dir() else None


def _sequence_namer(dataset_name: str, dataset: Dataset | None) -> SequenceName:
    """Maps a file stem to the dataset's spelling of that sequence's name, or None for anything else."""
    if dataset is not None:
        names = {name_key(n): n for n in dataset.sequence_names()}
        return lambda stem: names.get(name_key(stem))
    if dataset_name == "got10k_test":

        def got10k_name(stem: str) -> str | None:
            match = _GOT10K_TEST_NAME.fullmatch(stem)
            if match is None or not 1 <= int(match.group(1)) <= GOT10K_TEST_SEQUENCES:
                return None
            return f"GOT-10k_Test_{match.group(1)}"

        return got10k_name
    raise InputError(
        f"{dataset_name}: give the dataset (--data-root or ${env_var_for(dataset_name)}) so that only its "
        "sequences are packed"
    )


def _is_companion(stem: str, sequence: SequenceName) -> bool:
    return any(stem.endswith(s) and sequence(stem[: -len(s)]) is not None for s in COMPANION_SUFFIXES)


def _result_files(folder: Path, sequence: SequenceName, ignore_extra: bool) -> dict[str, Path]:
    """Result file per sequence name; a ``.txt`` that belongs to no sequence is an error (or skipped)."""
    files: dict[str, Path] = {}
    extra: list[str] = []
    for path in sorted(folder.glob("*.txt")):
        name = None if path.name.startswith(".") else sequence(path.stem)
        if name is not None:
            if name in files:
                raise InputError(f"{folder}: {files[name].name} and {path.name} name the same sequence; remove one")
            files[name] = path
        elif not path.name.startswith(".") and not _is_companion(path.stem, sequence):
            extra.append(path.name)
    if extra and not ignore_extra:
        raise InputError(
            f"{folder}: {', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not a result of a sequence of the "
            "dataset; move it away or pass --ignore-extra to skip it"
        )
    if extra:
        log.warning(
            "%s: skipped %d files that are no sequence of the dataset: %s", folder, len(extra), ", ".join(extra)
        )
    if not files:
        raise InputError(f"no result files (<seq>.txt) of the dataset's sequences in {folder}")
    return files


def _check_complete(files: dict[str, Path], boxes: dict[str, NDArray[np.float64]], dataset: Dataset | None) -> None:
    """With the dataset at hand, every sequence must have a result (``boxes``, read from ``files``) with one row
    per frame."""
    if dataset is None:
        return
    missing = [n for n in dataset.sequence_names() if n not in files]
    if missing:
        raise InputError(
            f"{len(missing)} sequences have no result (e.g. {', '.join(missing[:3])}); finish the run first"
        )
    for name in dataset.sequence_names():
        frames = len(dataset.load(name).frames)
        rows = len(boxes[name])
        if frames and rows != frames:
            raise InputError(f"{files[name]} has {rows} rows for {frames} frames; re-run that sequence")


def pack(
    dataset_name: str,
    results: str | Path,
    out: str | Path | None = None,
    dataset: Dataset | None = None,
    ignore_extra: bool = False,
) -> Path:
    """Build the server zip for ``got10k_test`` or ``trackingnet`` from a results folder; returns its path.

    ``dataset`` (see :func:`pack_dataset`) names the sequences and checks the pack complete; ``ignore_extra``
    skips, with a warning, files that are no sequence's result instead of failing.
    """
    folder = Path(results)
    if dataset_name not in FORMATS:
        raise InputError(f"no server submission format for '{dataset_name}'; use one of {', '.join(FORMATS)}")
    if not folder.is_dir():
        raise InputError(f"results folder not found: {folder}")
    files = _result_files(folder, _sequence_namer(dataset_name, dataset), ignore_extra)
    boxes = {name: read_boxes(path) for name, path in files.items()}  # read once: checked, then packed
    _check_complete(files, boxes, dataset)
    stem = "got10k_submit" if dataset_name == "got10k_test" else "trackingnet_submit"
    target = Path(out) if out else folder / f"{stem}.zip"
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in files.items():
            text = format_ints(boxes[name])
            if dataset_name == "trackingnet":
                zf.writestr(f"{name}.txt", text)
                continue
            zf.writestr(f"{name}/{name}_001.txt", text)
            time_file = path.with_name(f"{path.stem}{TIME_SUFFIX}.txt")
            if time_file.is_file():
                zf.writestr(f"{name}/{name}_time.txt", time_file.read_text())
    return target
