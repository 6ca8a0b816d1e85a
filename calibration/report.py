"""The accuracy cost of an INT8 model on held-out sequences: JSON report, terminal table and the AUC gate.

Numbers (see :mod:`grm.calibration.evaluate` for the two passes):

* ``decision_agreement``: per dividing layer, share of search tokens whose division decision is the same in
  INT8 as in FP32 on the same input (only when the model exports ``decisions``);
* ``output_error``: max and mean absolute difference of the score/size/offset maps on the same input;
* ``iou_same_input``: IoU of the two decoded boxes on the same crop, per frame;
* ``iou_trajectory``: IoU of the INT8 tracker's box with the FP32 tracker's box, per frame, each tracking alone;
* ``auc``/``precision``: one-pass success AUC and precision @ 20 px in percent (pytracking rules,
  :func:`grm.benchmarks.metrics.score_boxes`) of both models against the ground truth of the same sequences.

The gate fails when ``auc_fp32 - auc_int8`` exceeds ``max_auc_drop`` percentage points.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grm.calibration.evaluate import SequenceComparison
from grm.calibration.metrics import auc_and_precision
from grm.calibration.speed import SpeedResult
from grm.runtime.atomic import atomic_write_text
from grm.runtime.outputs import nan_to_none

NO_DECISIONS = "the model has no 'decisions' output; export it with decisions to measure division agreement"


def _stats(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"mean": math.nan, "min": math.nan}
    return {"mean": float(arr.mean()), "min": float(arr.min())}


def sequence_summary(c: SequenceComparison) -> dict[str, Any]:
    """Per-sequence numbers, with the per-frame IoU lists."""
    agreement = c.agreement
    auc_fp32, prec_fp32 = auc_and_precision([c.fp32_boxes], [c.gt]) if c.gt is not None else (math.nan, math.nan)
    auc_int8, prec_int8 = auc_and_precision([c.int8_boxes], [c.gt]) if c.gt is not None else (math.nan, math.nan)
    return {
        "frames": len(c.fp32_boxes),
        "decision_agreement": None if agreement is None else [float(v) for v in agreement.mean(axis=0)],
        "decision_agreement_min_frame": None if agreement is None else float(agreement.min()),
        "output_error": {"max_abs": dict(c.same_input.max_abs), "mean_abs": c.same_input.mean_abs()},
        "iou_same_input": _stats(c.same_input.box_iou),
        "iou_trajectory": _stats(c.trajectory_iou),
        "auc": {"fp32": auc_fp32, "int8": auc_int8},
        "precision": {"fp32": prec_fp32, "int8": prec_int8},
        "per_frame": {
            "iou_same_input": [round(v, 5) for v in c.same_input.box_iou],
            "iou_trajectory": [round(float(v), 5) for v in c.trajectory_iou],
        },
    }


def overall_summary(comparisons: Sequence[SequenceComparison]) -> dict[str, Any]:
    """Numbers over all held-out sequences (frames pooled; AUC/precision with sequences weighted equally)."""
    with_gt = [c for c in comparisons if c.gt is not None]
    auc_fp32, prec_fp32 = auc_and_precision([c.fp32_boxes for c in with_gt], [c.gt for c in with_gt])
    auc_int8, prec_int8 = auc_and_precision([c.int8_boxes for c in with_gt], [c.gt for c in with_gt])
    agreements = [c.agreement for c in comparisons if c.agreement is not None]
    pooled = np.concatenate(agreements) if agreements else None
    max_abs: dict[str, float] = {}
    for c in comparisons:
        for k, v in c.same_input.max_abs.items():
            max_abs[k] = max(max_abs.get(k, 0.0), v)
    return {
        "frames": int(sum(len(c.fp32_boxes) for c in comparisons)),
        "decision_agreement": None if pooled is None else [float(v) for v in pooled.mean(axis=0)],
        "output_error_max_abs": max_abs,
        "iou_same_input": _stats(np.concatenate([c.same_input.box_iou for c in comparisons])),
        "iou_trajectory": _stats(np.concatenate([c.trajectory_iou for c in comparisons])),
        "auc": {"fp32": auc_fp32, "int8": auc_int8, "drop": auc_fp32 - auc_int8},
        "precision": {"fp32": prec_fp32, "int8": prec_int8, "drop": prec_fp32 - prec_int8},
        "sequences_with_ground_truth": [c.name for c in with_gt],
    }


def build_report(
    comparisons: Sequence[SequenceComparison],
    *,
    max_auc_drop: float,
    context: Mapping[str, Any],
    speed: SpeedResult | None = None,
) -> dict[str, Any]:
    """The whole report; ``gate.passed`` is False when the AUC drop exceeds ``max_auc_drop`` points."""
    overall = overall_summary(comparisons)
    drop = overall["auc"]["drop"]
    notes = []
    if overall["decision_agreement"] is None:
        notes.append(NO_DECISIONS)
    if not overall["sequences_with_ground_truth"]:
        notes.append("no held-out sequence has ground truth for every frame: AUC and the gate are not measured")
    passed = not (math.isfinite(drop) and drop > max_auc_drop)
    return {
        **context,
        "sequences": {c.name: sequence_summary(c) for c in comparisons},
        "overall": overall,
        "speed": None if speed is None else speed.to_dict(),
        "gate": {"max_auc_drop": max_auc_drop, "auc_drop": drop, "passed": passed},
        "notes": notes,
    }


def write_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write the report JSON atomically (NaN written as null)."""
    text = json.dumps(nan_to_none(report), indent=1, sort_keys=False)
    return atomic_write_text(path, text + "\n")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def format_table(report: Mapping[str, Any]) -> str:
    """Plain-text table: one row per held-out sequence plus the overall row, then speed and gate lines."""
    header = ("sequence", "frames", "decision agree/layer", "IoU same", "IoU traj", "AUC fp32", "AUC int8",
              "Prec fp32", "Prec int8")  # fmt: skip
    rows = [_row(name, s) for name, s in report["sequences"].items()]
    rows.append(_row("overall", report["overall"]))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    speed = report.get("speed")
    if speed:
        lines.extend(_speed_lines(speed))
    gate = report["gate"]
    lines.append(
        f"AUC drop {_fmt(gate['auc_drop'], 2)} points (limit {gate['max_auc_drop']:.2f}): "
        f"{'PASS' if gate['passed'] else 'FAIL'}"
    )
    lines.extend(f"note: {n}" for n in report.get("notes", []))
    return "\n".join(lines)


def _speed_lines(speed: Mapping[str, Any]) -> list[str]:
    """The speed line (ratio of medians and the spread of the per-step ratios) and the CPU it ran on."""
    form = f" ({speed['int8_target']} form)" if speed.get("int8_target") else ""
    p10, _, p90 = speed.get("step_ratio_p10_p50_p90") or (None, None, None)
    return [
        f"speed (ONNX Runtime CPU, {speed['threads'] or 'default'} threads, median of {speed['repeats']} interleaved): "
        f"FP32 {speed['fp32_ms']:.1f} ms, INT8{form} {speed['int8_ms']:.1f} ms, INT8 speed-up {speed['speedup']:.2f}x "
        f"(per-step {_fmt(p10, 2)}-{_fmt(p90, 2)}x)",
        f"CPU: {speed.get('cpu_features') or 'not recorded'}",
    ]


def _row(name: str, s: Mapping[str, Any]) -> tuple[str, ...]:
    agreement = s.get("decision_agreement")
    agree = "n/a" if agreement is None else " ".join(f"{v:.3f}" for v in agreement)
    return (
        name,
        str(s["frames"]),
        agree,
        _fmt(s["iou_same_input"]["mean"]),
        _fmt(s["iou_trajectory"]["mean"]),
        _fmt(s["auc"]["fp32"], 1),
        _fmt(s["auc"]["int8"], 1),
        _fmt(s["precision"]["fp32"], 1),
        _fmt(s["precision"]["int8"], 1),
    )
