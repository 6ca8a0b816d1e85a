"""Benchmark dataset loaders by CLI name.

``open_dataset("uav", root)`` returns a :class:`Dataset`; the root comes from the argument or from the
dataset's environment variable (``GRM_UAV_ROOT``, ``GRM_LASOT_ROOT``, ``GRM_GOT10K_VAL_ROOT`` ...).
"""

from __future__ import annotations

from pathlib import Path

from grm.benchmarks.datasets.avist import AVisT
from grm.benchmarks.datasets.base import Dataset, Sequence, env_var_for, resolve_root
from grm.benchmarks.datasets.got10k import GOT10kTest, GOT10kVal
from grm.benchmarks.datasets.lasot import LaSOT, LaSOTExtension
from grm.benchmarks.datasets.nfs import NfS
from grm.benchmarks.datasets.otb import OTB
from grm.benchmarks.datasets.trackingnet import TrackingNet
from grm.benchmarks.datasets.uav import UAV20L, UAV123
from grm.runtime.datasets import unknown_dataset
from grm.runtime.errors import DatasetError

# Keyed by CLI name; the names are those of grm.runtime.datasets.BENCHMARKS (one table for every command).
DATASETS: dict[str, type[Dataset]] = {
    cls.name: cls
    for cls in (UAV123, UAV20L, LaSOT, LaSOTExtension, NfS, AVisT, GOT10kTest, GOT10kVal, TrackingNet, OTB)
}


def open_dataset(name: str, root: str | Path | None = None, partial: bool = False) -> Dataset:
    """Open a dataset by CLI name; raises :class:`DatasetError` with the expected layout when it is missing."""
    cls = DATASETS.get(name)
    if cls is None:
        raise DatasetError(unknown_dataset(name))
    return cls(resolve_root(name, root, cls.layout), partial=partial)


__all__ = ["DATASETS", "Dataset", "Sequence", "env_var_for", "open_dataset"]
