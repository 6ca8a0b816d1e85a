"""Analysis reports as markdown tables and JSON, written atomically beside the results.

Scores are in percent (FPS in frames per second), and every per-sequence number follows the same rules as
the overall number beside it: the protocol's AUC / precision, and for GOT-10k val the toolkit's AO / SR.
The report names those rules and both speed definitions (:func:`definitions`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from grm.benchmarks import metrics
from grm.benchmarks.analysis import AnalysisReport, TrackerReport
from grm.runtime.atomic import atomic_write_text
from grm.runtime.outputs import nan_to_none

SUMMARY_KEYS = ("AUC", "OP50", "OP75", "Prec", "NormPrec")
GOT_KEYS = ("AO", "SR50", "SR75")
Cell = str | int | float | None
Table = tuple[list[str], list[list[Cell]]]
PROTOCOL_RULES = {
    "pytracking": "PyTracking analysis rules (frame 0 set to the ground truth, inclusive-pixel IoU, "
    "per-dataset invalid frames), sequences weighed equally",
    "otb": "OTB toolkit rules (also the LaSOT toolkit), sequences weighed equally",
}
GOT10K_RULES = (
    "GOT-10k toolkit rules: continuous IoU of both boxes clipped to the image, frame 0 and frames with the "
    "target absent (cover 0) excluded; overall = frames of all sequences pooled, per sequence = its own frames"
)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _has_got10k(report: AnalysisReport) -> bool:
    return any(t.got10k for t in report.trackers)


def definitions(report: AnalysisReport) -> dict[str, str]:
    """What the reported figures mean: the protocol's rules, the GOT-10k rules, and both FPS definitions."""
    out = {
        "protocol": f"{report.protocol}: {PROTOCOL_RULES.get(report.protocol, report.protocol)}",
        "FPS": metrics.FPS_DEFINITION,
    }
    if _has_got10k(report):
        out["got10k"] = GOT10K_RULES
        out["got10k.FPS"] = metrics.GOT10K_FPS_DEFINITION
    return out


def cell_text(cell: Cell) -> str:
    """How a table cell reads in every report (counts as integers, scores with one decimal, missing as '-')."""
    if isinstance(cell, str):
        return cell
    return str(cell) if isinstance(cell, int) else _fmt(cell)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _markdown(table: Table) -> str:
    head, rows = table
    lines = [_row(head), _row(["---"] * len(head))]
    return "\n".join([*lines, *(_row([cell_text(c) for c in row]) for row in rows)])


def sequence_scores(c: metrics.Curves) -> dict[str, float]:
    """Per-sequence AUC, precision @20 px and normalised precision @0.20 in percent."""
    return {
        "AUC": float(c.success.mean() * 100),
        "Prec": float(c.precision[20] * 100),
        "NormPrec": float(c.norm_precision[20] * 100),
    }


def summary_rows(report: AnalysisReport) -> Table:
    """One row per tracker: AUC, OP50, OP75, precision @20 px, normalised precision @0.20 (percent), FPS.

    For GOT-10k val also AO, SR50, SR75 (percent) and "FPS GOT-10k", the speed as the toolkit defines it.
    """
    got = _has_got10k(report)
    extra_fps = ("FPS GOT-10k",) if got else ()
    head = ["Tracker", *SUMMARY_KEYS, *(GOT_KEYS if got else ()), "FPS", *extra_fps, "Sequences"]
    rows: list[list[Cell]] = []
    for t in report.trackers:
        values = t.summary.as_dict()
        cells: list[Cell] = [t.label, *(values[k] for k in SUMMARY_KEYS)]
        if got:
            cells += [(t.got10k or {}).get(k) for k in GOT_KEYS]
        cells.append(t.fps)
        if got:
            cells.append((t.got10k or {}).get("FPS"))
        rows.append([*cells, t.summary.sequences])
    return head, rows


def sequence_rows(report: AnalysisReport) -> Table:
    """Per-sequence AUC and precision @20 px (the protocol's) and, for GOT-10k val, the toolkit's AO, SR50, SR75."""
    got = _has_got10k(report)
    keys = ("AUC", "Prec", *(GOT_KEYS if got else ()))
    head = ["Sequence"] + [f"{t.label} {k}" for t in report.trackers for k in keys]
    rows: list[list[Cell]] = []
    for name in report.sequences:
        cells: list[Cell] = [name]
        for t in report.trackers:
            scores = sequence_scores(t.per_sequence[name])
            cells += [scores["AUC"], scores["Prec"]]
            if got:
                cells += [t.got10k_per_sequence.get(name, {}).get(k) for k in GOT_KEYS]
        rows.append(cells)
    return head, rows


def attribute_rows(report: AnalysisReport) -> Table | None:
    """AUC per attribute (number of sequences in brackets), or None when the dataset has no attribute files."""
    names = list(dict.fromkeys(a for t in report.trackers for a in t.attributes))
    if not names:
        return None
    head = ["Attribute"] + [t.label for t in report.trackers]
    rows: list[list[Cell]] = []
    for name in names:
        count = next(t.attributes[name].sequences for t in report.trackers if name in t.attributes)
        rows.append(
            [f"{name} ({count})"] + [t.attributes[name].auc if name in t.attributes else None for t in report.trackers]
        )
    return head, rows


def summary_table(report: AnalysisReport) -> str:
    return _markdown(summary_rows(report))


def sequence_table(report: AnalysisReport) -> str:
    return _markdown(sequence_rows(report))


def attribute_table(report: AnalysisReport) -> str | None:
    rows = attribute_rows(report)
    return None if rows is None else _markdown(rows)


def legend(report: AnalysisReport) -> str:
    """The paragraph under a report's title: units, the rules of every column, both speed definitions."""
    text = definitions(report)
    lines = [
        f"Protocol {text['protocol']}. Scores in percent: AUC = mean success over 21 IoU thresholds, "
        "OP50/OP75 = success at IoU 0.50/0.75, Prec = precision at 20 px, NormPrec = normalised precision at 0.20."
    ]
    if "got10k" in text:
        lines.append(f"AO, SR50, SR75 (percent) follow the {text['got10k']}.")
    lines.append(f"FPS = {text['FPS']}.")
    if "got10k.FPS" in text:
        lines.append(f"FPS GOT-10k = {text['got10k.FPS']}.")
    return " ".join(lines)


def to_markdown(report: AnalysisReport) -> str:
    parts = [
        f"# {report.dataset}: {len(report.sequences)} sequences, protocol {report.protocol}",
        "",
        legend(report),
        "",
        summary_table(report),
    ]
    attr = attribute_table(report)
    if attr:
        parts += ["", "## AUC per attribute", "", attr]
    if report.missing:
        parts += ["", "## Sequences left out (missing results)", ""]
        parts += [f"- {label}: {', '.join(names)}" for label, names in report.missing.items()]
    rules = f"AUC and Prec under protocol {report.protocol}"
    if _has_got10k(report):
        rules += "; AO, SR50, SR75 under the GOT-10k toolkit rules on the sequence's own frames"
    parts += ["", "## Per sequence", "", f"Percent; {rules}.", "", sequence_table(report), ""]
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
        "per_sequence": {name: _sequence_json(t, name, c) for name, c in t.per_sequence.items()},
    }


def _sequence_json(t: TrackerReport, name: str, c: metrics.Curves) -> dict[str, Any]:
    """One sequence's numbers, with the keys, rules and units of the tracker's overall ones."""
    out: dict[str, Any] = {**sequence_scores(c), "FPS": t.sequence_fps.get(name)}
    if name in t.got10k_per_sequence:
        out["got10k"] = t.got10k_per_sequence[name]
    return out


def to_json(report: AnalysisReport) -> dict[str, Any]:
    return {
        "dataset": report.dataset,
        "protocol": report.protocol,
        "definitions": definitions(report),
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
    atomic_write_text(md, to_markdown(report))
    atomic_write_text(js, json.dumps(nan_to_none(to_json(report)), indent=1, allow_nan=False))
    return [md, js]
