"""Scoring result folders against a dataset's ground truth, per sequence and overall.

Needs only annotation files, so it runs on a dataset tree whose image folders are empty or absent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from grm.benchmarks import metrics
from grm.benchmarks.datasets import Dataset, Sequence
from grm.benchmarks.results import ResultSet
from grm.benchmarks.textio import read_boxes
from grm.runtime.errors import InputError

PROTOCOLS = ("pytracking", "otb")


@dataclass
class TrackerReport:
    """Scores of one result set on one dataset.

    Attributes:
        summary / per_sequence: scores under the report's protocol (curves are fractions).
        got10k / got10k_per_sequence: GOT-10k toolkit AO, SR50, SR75 (percent) and ``FPS`` (toolkit
            definition, :data:`metrics.GOT10K_FPS_DEFINITION`) overall and per sequence; GOT-10k val only.
        fps / sequence_fps: speed as :data:`metrics.FPS_DEFINITION`, overall and per sequence.
    """

    label: str
    summary: metrics.Summary
    per_sequence: dict[str, metrics.Curves]
    got10k: dict[str, float | None] | None = None
    attributes: dict[str, metrics.Summary] = field(default_factory=dict)
    fps: float | None = None
    got10k_per_sequence: dict[str, dict[str, float | None]] = field(default_factory=dict)
    sequence_fps: dict[str, float | None] = field(default_factory=dict)


@dataclass
class AnalysisReport:
    """Scores of several result sets on the same sequences under one protocol."""

    dataset: str
    protocol: str
    sequences: list[str]
    trackers: list[TrackerReport]
    overlap_thresholds: NDArray[np.float64]
    norm_thresholds: NDArray[np.float64]
    missing: dict[str, list[str]] = field(default_factory=dict)


def thresholds(protocol: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if protocol == "pytracking":
        return metrics.PYTRACKING_OVERLAP, metrics.PYTRACKING_NORM
    if protocol == "otb":
        return metrics.OTB_OVERLAP, metrics.OTB_NORM
    raise InputError(f"unknown protocol '{protocol}'; use one of {', '.join(PROTOCOLS)}")


def align_leading(pred: NDArray[np.float64], seq: Sequence) -> NDArray[np.float64]:
    """Drop the rows of a result that starts at video frame 1 when the sequence starts later (OTB quirks)."""
    if seq.leading_frames and len(pred) == len(seq.gt) + seq.leading_frames:
        return pred[seq.leading_frames :]
    return pred


def frame_errors(pred: NDArray[np.float64], seq: Sequence, protocol: str) -> metrics.FrameErrors:
    pred = align_leading(pred, seq)
    where = f"{seq.name}"
    if protocol == "otb":
        return metrics.otb_errors(pred, seq.gt, seq.visible, where=where)
    return metrics.pytracking_errors(pred, seq.gt, seq.tag, seq.visible, where=where)


def _locate(
    sets: list[ResultSet], seqs: list[Sequence], skip_missing: bool
) -> tuple[list[Sequence], dict[str, list[str]]]:
    missing = {rs.label: [s.name for s in seqs if rs.find(s.name, s.aliases) is None] for rs in sets}
    absent = {name for names in missing.values() for name in names}
    if absent and not skip_missing:
        worst = max(missing, key=lambda k: len(missing[k]))
        names = missing[worst]
        raise InputError(
            f"results '{worst}' lack {len(names)} of {len(seqs)} sequences (e.g. {', '.join(names[:3])}); "
            "finish the run or pass --skip-missing to score the sequences all folders have"
        )
    kept = [s for s in seqs if s.name not in absent]
    if not kept:
        raise InputError("no sequence has results in every folder")
    return kept, {k: v for k, v in missing.items() if v}


def _score_set(
    rs: ResultSet, seqs: list[Sequence], protocol: str, got10k: bool, on_sequence: Callable[[str], None] | None
) -> TrackerReport:
    """Score one result set: the protocol's curves, GOT-10k toolkit scores where asked, and both speeds."""
    overlap, norm = thresholds(protocol)
    curves: dict[str, metrics.Curves] = {}
    ious: dict[str, NDArray[np.float64]] = {}
    times: dict[str, NDArray[np.float64]] = {}
    for seq in seqs:
        path = rs.find(seq.name, seq.aliases)
        assert path is not None  # guaranteed by _locate
        pred = read_boxes(path)
        curves[seq.name] = metrics.sequence_curves(frame_errors(pred, seq, protocol), overlap, norm)
        if got10k:
            ious[seq.name] = metrics.got10k_ious(pred, seq.gt, seq.cover, seq.resolution, where=seq.name)
        seq_times = rs.times(path)
        if seq_times is not None:
            times[seq.name] = seq_times
        if on_sequence is not None:
            on_sequence(seq.name)
    report = TrackerReport(
        rs.label,
        metrics.summarize(list(curves.values()), overlap),
        curves,
        fps=metrics.throughput_fps(list(times.values())),
        sequence_fps={name: metrics.throughput_fps([t]) for name, t in times.items()},
    )
    if got10k:
        report.got10k = {**metrics.got10k_summary(list(ious.values())), "FPS": metrics.got10k_fps(list(times.values()))}
        report.got10k_per_sequence = {
            name: {**metrics.got10k_scores(i), "FPS": metrics.got10k_fps([times[name]]) if name in times else None}
            for name, i in ious.items()
        }
    return report


def analyze(
    dataset: Dataset,
    sets: list[ResultSet],
    protocol: str = "pytracking",
    skip_missing: bool = False,
    on_sequence: Callable[[str], None] | None = None,
) -> AnalysisReport:
    """Score every result set on the dataset; all sets are scored on the same sequences."""
    if not dataset.has_ground_truth:
        raise InputError(
            f"{dataset.name} has no public ground truth; build the server submission with grm-bench pack instead"
        )
    overlap, norm = thresholds(protocol)
    seqs, missing = _locate(sets, dataset.sequences(), skip_missing)
    attr = dataset.attribute_table()
    reports = []
    for rs in sets:
        report = _score_set(rs, seqs, protocol, dataset.name == "got10k_val", on_sequence)
        if attr is not None:
            report.attributes = _by_attribute(report.per_sequence, attr, overlap)
        reports.append(report)
    return AnalysisReport(dataset.name, protocol, [s.name for s in seqs], reports, overlap, norm, missing)


def _by_attribute(
    curves: dict[str, metrics.Curves],
    attr: tuple[list[str], dict[str, NDArray[np.bool_]]],
    overlap: NDArray[np.float64],
) -> dict[str, metrics.Summary]:
    names, flags = attr
    out = {}
    for i, name in enumerate(names):
        chosen = [c for seq, c in curves.items() if seq in flags and flags[seq][i]]
        if chosen:
            out[name] = metrics.summarize(chosen, overlap)
    return out
