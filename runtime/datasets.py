"""Benchmark dataset names and the division threshold each one tracks with: one table for every grm command.

``grm-run --dataset``, ``grm-bench`` and ``grm-calibrate --dataset`` accept the same names (those of the
grm-bench loaders). The official tracker looks its threshold up as ``TEST.HYPER[<name upper-cased>]`` and
falls back to ``DEFAULT`` (0, the argmax rule) when the model has no preset for that key, so a dataset
without a preset (``otb``, ``lasot_ext``, ``got10k_val`` ...) tracks with the model's DEFAULT threshold.
"""

from __future__ import annotations

import difflib
import math

from grm.runtime.errors import ConfigError, InputError
from grm.runtime.params import TrackerParams

# CLI names of the benchmarks grm-bench can load, in the order its help lists them.
BENCHMARKS: tuple[str, ...] = (
    "uav",
    "uav20l",
    "lasot",
    "lasot_ext",
    "nfs",
    "avist",
    "got10k_test",
    "got10k_val",
    "trackingnet",
    "otb",
)


def dataset_name(name: str, option: str = "--dataset") -> str:
    """The table's spelling of ``name`` (case-insensitive); an unknown name fails with a did-you-mean."""
    key = name.strip().lower()
    if key in BENCHMARKS:
        return key
    raise ConfigError(unknown_dataset(name, option))


def unknown_dataset(name: str, option: str = "--dataset") -> str:
    """The one-line message for a name outside the table, with the closest known name."""
    close = difflib.get_close_matches(name.strip().lower(), BENCHMARKS, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown dataset '{name}' for {option}; choose one of {', '.join(BENCHMARKS)}{hint}"


def preset_key(name: str) -> str:
    """The key of the model's threshold table that ``name`` selects (upper case, as the official tracker)."""
    return dataset_name(name).upper()


def check_threshold(value: float, option: str = "--threshold") -> float:
    """A division threshold must lie in [0, 1) (0 = argmax rule); anything else is one-line bad input."""
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise InputError(f"{option} {value:g} must lie in [0, 1) (0 = argmax rule)")
    return float(value)


def dataset_threshold(params: TrackerParams, name: str) -> float:
    """The threshold a model tracks ``name`` with: its preset for that dataset, else its DEFAULT."""
    return params.threshold_for(preset_key(name))


def check_threshold_options(threshold: float | None, dataset: str | None) -> None:
    """``--threshold`` and ``--dataset`` exclude each other; each is checked (before any model is opened)."""
    if threshold is not None and dataset is not None:
        raise InputError("give either --threshold or --dataset, not both")
    if threshold is not None:
        check_threshold(threshold)
    if dataset is not None:
        dataset_name(dataset)


def resolve_threshold(params: TrackerParams, threshold: float | None, dataset: str | None) -> float:
    """Division threshold from ``--threshold`` or ``--dataset``, else the model's DEFAULT preset."""
    check_threshold_options(threshold, dataset)
    if threshold is not None:
        return float(threshold)
    if dataset is not None:
        return dataset_threshold(params, dataset)
    return params.threshold_for(None)
