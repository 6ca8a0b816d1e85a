"""Speed statistics of a run: per-stage latency percentiles and the human-readable summary.

Stages follow :class:`grm.runtime.tracker.StageTimes`: ``preprocess`` = colour conversion + crop + normalise,
``inference`` = the backend call, ``postprocess`` = Hann window + decode + map back + clip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from grm.runtime.tracker import StageTimes

STAGES: Mapping[str, str] = {
    "preprocess": "crop+normalise",
    "inference": "inference",
    "postprocess": "decode+map-back",
    "total": "total",
}
PERCENTILES = (50, 90, 99)
FPS_DEFINITION = "frames handled / wall time of the frame loop (reading, tracking, drawing and writing included)"


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
    lines = [
        f"frames: {summary['frames']} ({summary['tracked']} tracked, {len(summary['skipped_frames'])} skipped)"
        + (
            f", lost: {len(summary['lost_frames'])} below score {summary['lost_threshold']}"
            if summary.get("lost_threshold") is not None
            else ""
        ),
        f"fps: {summary['fps']:.1f} ({summary['frames']} frames / {summary['wall_time_s']:.2f} s; {FPS_DEFINITION})",
    ]
    if summary.get("time_to_first_frame_s") is not None:
        lines.append(f"process start to first tracked frame: {summary['time_to_first_frame_s']:.2f} s")
    lines.append("latency ms        " + "  ".join(f"{f'p{p}':>7}" for p in PERCENTILES))
    for stage, label in STAGES.items():
        row = summary["latency_ms"][stage]
        lines.append(f"  {label:<16}" + "  ".join(f"{row[f'p{p}']:7.2f}" for p in PERCENTILES))
    if summary.get("interrupted"):
        lines.append("interrupted: outputs hold every frame handled so far")
    if summary.get("ended_early"):
        lines.append("the source ended before its announced frame count")
    return "\n".join(lines)
