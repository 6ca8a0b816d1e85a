"""Glue between the benchmark steps used by ``grm-bench``: where results go, scoring a finished run,
the speed summary of a run, and the clip a speed measurement uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grm.benchmarks.analysis import AnalysisReport, analyze
from grm.benchmarks.datasets import Dataset, open_dataset
from grm.benchmarks.report import write_report
from grm.benchmarks.results import ResultSet
from grm.benchmarks.speed import Clip
from grm.benchmarks.textio import read_boxes, read_flags
from grm.runtime.atomic import atomic_write_text
from grm.runtime.errors import InputError
from grm.runtime.outputs import nan_to_none
from grm.runtime.session import parse_box
from grm.runtime.stats import percentiles_ms


def run_label(engine_label: str, threshold: float | None) -> str:
    """Results are kept apart per model file and per threshold override (``grm.plan``, ``grm.plan-thr0.3``)."""
    return engine_label if threshold is None else f"{engine_label}-thr{threshold:g}"


def results_folder(results_dir: str | Path, label: str, dataset: str) -> Path:
    return Path(results_dir) / label / dataset


def is_complete(dataset: Dataset, folder: Path) -> bool:
    return all((folder / f"{name}.txt").is_file() for name in dataset.sequence_names())


def run_speed_summary(folder: Path, names: list[str]) -> dict[str, Any]:
    """Speed over every tracked frame of a run, from its ``<seq>_time.txt`` files (initialisation excluded)."""
    seconds: list[float] = []
    inits: list[float] = []
    for name in names:
        path = folder / f"{name}_time.txt"
        if path.is_file():
            values = read_flags(path).tolist()
            inits.append(values[0])
            seconds.extend(values[1:])
    total = sum(seconds)
    return nan_to_none(
        {
            "frames": len(seconds),
            "sequences": len(inits),
            "track_seconds": total,
            "fps": len(seconds) / total if total > 0 else None,
            "fps_definition": "tracked frames / sum of per-frame Tracker.track times (initialisation and frame reading excluded)",
            "frame_latency_ms": percentiles_ms(seconds),
            "init_latency_ms": percentiles_ms(inits),
        }
    )


def report_run(
    dataset: Dataset, folder: Path, label: str, protocol: str, plots: bool
) -> tuple[AnalysisReport, list[Path]]:
    """Score a finished run and write its table, JSON, plots and speed summary into its folder."""
    report = analyze(dataset, [ResultSet(label, [folder])], protocol)
    written = write_report(report, folder)
    if plots:
        from grm.benchmarks.plots import write_plots

        written += write_plots(report, folder)
    speed = folder / "speed_summary.json"
    atomic_write_text(speed, json.dumps(run_speed_summary(folder, report.sequences), indent=1))
    return report, [*written, speed]


def speed_clip(
    source: str | None, box: str | None, dataset: str | None, data_root: Path | None, sequence: str | None, frames: int
) -> Clip:
    """The frames to time: a dataset sequence, an OTB-style folder (img/ + groundtruth_rect.txt), or a source."""
    if dataset:
        ds = open_dataset(dataset, data_root, partial=True)
        seq = ds.load(sequence or ds.sequence_names()[0])
        return Clip(seq.name, tuple(float(v) for v in seq.gt[0]), files=seq.frames, max_frames=frames)  # type: ignore[arg-type]
    if not source:
        raise InputError("give frames to time: --source VIDEO|FOLDER (with --box) or --dataset NAME --data-root DIR")
    folder = Path(source)
    gt = folder / "groundtruth_rect.txt"
    if box is None and gt.is_file() and (folder / "img").is_dir():
        files = tuple(sorted(p for p in (folder / "img").iterdir() if p.suffix.lower() in (".jpg", ".png")))
        return Clip(folder.name, tuple(read_boxes(gt)[0]), files=files, max_frames=frames)
    if box is None:
        raise InputError(f"--box x,y,w,h is needed for {source} (no groundtruth_rect.txt beside an img/ folder)")
    return Clip(folder.name or source, parse_box(box), source=source, max_frames=frames)
