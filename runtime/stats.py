"""Speed statistics of a run: per-stage latency percentiles and the human-readable summary.

Stages are the fields of :class:`grm.runtime.tracker.StageTimes`; :data:`STAGES` names them once for the JSON
summary's keys and the console's rows alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from grm.runtime.tracker import StageTimes

STAGES: Mapping[str, str] = {  # stage name (JSON key and console row) -> what it times
    "preprocess": "colour conversion, crop+normalise",
    "inference": "the backend call",
    "postprocess": "Hann window, decode+map-back, clip",
    "total": "the whole tracking step",
}
PERCENTILES = (50, 90, 99)
FPS_DEFINITION = "frames handled / wall time of the frame loop (reading, tracking, drawing and writing included)"
TIME_TO_FIRST_FRAME_DEFINITION = (
    "seconds from the start of the grm-run command (its entry point, once the Python interpreter runs) to the first "
    "tracked frame: imports, opening the model and the source, and the first frame's initialisation included"
)


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99 of durations given in seconds, in milliseconds (NaN when there are none)."""
    if not seconds:
        return {f"p{p}": math.nan for p in PERCENTILES}
    values = np.percentile(np.asarray(seconds, dtype=np.float64) * 1e3, PERCENTILES)
    return {f"p{p}": float(v) for p, v in zip(PERCENTILES, values, strict=True)}


def latency_ms(times: Sequence[StageTimes]) -> dict[str, dict[str, float]]:
    """Percentiles per stage and for the whole tracking step, in milliseconds."""
    return {stage: percentiles_ms([getattr(t, stage) for t in times]) for stage in STAGES}


def format_summary(summary: Mapping[str, Any]) -> str:
    """Multi-line summary for the terminal, from :meth:`RunResult.to_dict` output."""
    targets = summary.get("targets")
    lines = [
        f"frames: {summary['frames']} ({summary['tracked']} tracked, {len(summary['skipped_frames'])} skipped)"
        + (f", {len(targets)} targets" if targets else "")
        + _lost_text(summary),
        f"fps: {summary['fps']:.1f} ({summary['frames']} frames / {summary['wall_time_s']:.2f} s; {FPS_DEFINITION})",
    ]
    if summary.get("time_to_first_frame_s") is not None:
        lines.append(f"command start to first tracked frame: {summary['time_to_first_frame_s']:.2f} s")
    lines.append("latency ms        " + "  ".join(f"{f'p{p}':>7}" for p in PERCENTILES))
    for stage, meaning in STAGES.items():
        row = summary["latency_ms"][stage]
        lines.append(f"  {stage:<16}" + "  ".join(f"{row[f'p{p}']:7.2f}" for p in PERCENTILES) + f"  ({meaning})")
    if summary.get("interrupted"):
        lines.append("interrupted: outputs hold every frame handled so far")
    if summary.get("ended_early"):
        lines.append("the source ended before its announced frame count")
    return "\n".join(lines)


def _lost_text(summary: Mapping[str, Any]) -> str:
    """The lost count(s) of the first summary line; empty without a lost threshold."""
    threshold = summary.get("lost_threshold")
    if threshold is None:
        return ""
    targets = summary.get("targets")
    if targets:
        counts = ", ".join(f"target {i} {t['lost']}" for i, t in targets.items())
        return f", lost below score {threshold}: {counts}"
    return f", lost: {len(summary['lost_frames'])} below score {threshold}"
