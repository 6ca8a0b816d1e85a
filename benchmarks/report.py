"""Analysis reports as markdown tables and JSON, written atomically beside the results."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from grm.benchmarks.analysis import AnalysisReport, TrackerReport
from grm.benchmarks.textio import write_atomic

SUMMARY_KEYS = ("AUC", "OP50", "OP75", "Prec", "NormPrec")
GOT_KEYS = ("AO", "SR50", "SR75")


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def summary_table(report: AnalysisReport) -> str:
    """One row per tracker: AUC, OP50, OP75, precision @20 px, normalised precision @0.20 (percent)."""
    got = any(t.got10k for t in report.trackers)
    head = ["Tracker", *SUMMARY_KEYS, *(GOT_KEYS if got else ()), "FPS", "Sequences"]
    lines = [_row(head), _row(["---"] * len(head))]
    for t in report.trackers:
        values = t.summary.as_dict()
        cells = [t.label, *(_fmt(values[k]) for k in SUMMARY_KEYS)]
        if got:
            cells += [_fmt((t.got10k or {}).get(k)) for k in GOT_KEYS]
        lines.append(_row([*cells, _fmt(t.fps), str(t.summary.sequences)]))
    return "\n".join(lines)


def sequence_table(report: AnalysisReport) -> str:
    """Per-sequence AUC and precision @20 px for every tracker."""
    head = ["Sequence"] + [f"{t.label} {k}" for t in report.trackers for k in ("AUC", "Prec")]
    lines = [_row(head), _row(["---"] * len(head))]
    for name in report.sequences:
        cells = [name]
        for t in report.trackers:
            c = t.per_sequence[name]
            cells += [_fmt(c.success.mean() * 100), _fmt(c.precision[20] * 100)]
        lines.append(_row(cells))
    return "\n".join(lines)


def attribute_table(report: AnalysisReport) -> str | None:
    """AUC per attribute (number of sequences in brackets), or None when the dataset has no attribute files."""
    names = list(dict.fromkeys(a for t in report.trackers for a in t.attributes))
    if not names:
        return None
    head = ["Attribute"] + [t.label for t in report.trackers]
    lines = [_row(head), _row(["---"] * len(head))]
    for name in names:
        count = next(t.attributes[name].sequences for t in report.trackers if name in t.attributes)
        cells = [f"{name} ({count})"] + [
            _fmt(t.attributes[name].auc) if name in t.attributes else "-" for t in report.trackers
        ]
        lines.append(_row(cells))
    return "\n".join(lines)


def to_markdown(report: AnalysisReport) -> str:
    parts = [
        f"# {report.dataset}: {len(report.sequences)} sequences, protocol {report.protocol}",
        "",
        "Scores in percent: AUC = mean success over 21 IoU thresholds, OP50/OP75 = success at IoU 0.50/0.75, "
        "Prec = precision at 20 px, NormPrec = normalised precision at 0.20.",
        "",
        summary_table(report),
    ]
    attr = attribute_table(report)
    if attr:
        parts += ["", "## AUC per attribute", "", attr]
    if report.missing:
        parts += ["", "## Sequences left out (missing results)", ""]
        parts += [f"- {label}: {', '.join(names)}" for label, names in report.missing.items()]
    parts += ["", "## Per sequence", "", sequence_table(report), ""]
    return "\n".join(parts)


def _tracker_json(t: TrackerReport) -> dict[str, Any]:
    return {
        "label": t.label,
        "summary": t.summary.as_dict(),
        "got10k": t.got10k,
        "fps": t.fps,
        "success_curve": t.summary.success_curve.tolist(),
        "precision_curve": t.summary.precision_curve.tolist(),
        "norm_precision_curve": t.summary.norm_precision_curve.tolist(),
        "attributes": {k: {**v.as_dict(), "sequences": v.sequences} for k, v in t.attributes.items()},
        "per_sequence": {
            name: {
                "AUC": float(c.success.mean() * 100),
                "Prec": float(c.precision[20] * 100),
                "NormPrec": float(c.norm_precision[20] * 100),
                "AO": c.ao,
            }
            for name, c in t.per_sequence.items()
        },
    }


def to_json(report: AnalysisReport) -> dict[str, Any]:
    return {
        "dataset": report.dataset,
        "protocol": report.protocol,
        "sequences": report.sequences,
        "overlap_thresholds": report.overlap_thresholds.tolist(),
        "missing": report.missing,
        "trackers": [_tracker_json(t) for t in report.trackers],
    }


def write_report(report: AnalysisReport, out_dir: str | Path, stem: str | None = None) -> list[Path]:
    """Write ``<stem>.md`` and ``<stem>.json`` (default stem ``<dataset>_<protocol>``); returns the paths."""
    out = Path(out_dir)
    stem = stem or f"{report.dataset}_{report.protocol}"
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    write_atomic(md, to_markdown(report))
    write_atomic(js, json.dumps(finite(to_json(report)), indent=1, allow_nan=False))
    return [md, js]


def finite(value: Any) -> Any:
    """Replace NaN and infinities by None, recursively, so the JSON is standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
