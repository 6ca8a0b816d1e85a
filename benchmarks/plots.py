"""Success, precision and normalised-precision plots as PNG files or inline SVG.

matplotlib is imported only here, with the Agg backend.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grm.benchmarks.analysis import AnalysisReport
from grm.benchmarks.metrics import CENTER_THRESHOLDS
from grm.runtime.atomic import atomic_path
from grm.runtime.errors import BackendUnavailableError


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise BackendUnavailableError(
            "plots need matplotlib: pip install 'grm-tracker[bench]', or pass --no-plots"
        ) from e
    return plt


@dataclass(frozen=True)
class PlotSpec:
    """One curve plot: file-name suffix, title, axis labels and (legend, x, y) series."""

    key: str
    title: str
    xlabel: str
    ylabel: str
    series: list[tuple[str, Any, Any]]


def _figure(plt: Any, spec: PlotSpec) -> Any:
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for label, x, y in spec.series:
        ax.plot(x, y, linewidth=1.8, label=label)
    ax.set(title=spec.title, xlabel=spec.xlabel, ylabel=spec.ylabel, ylim=(0, 1), xlim=(x[0], x[-1]))
    ax.grid(True, linestyle=":")
    ax.legend(loc="lower left" if spec.key == "success" else "lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_specs(report: AnalysisReport) -> list[PlotSpec]:
    """Success (legend: AUC), precision (legend: value at 20 px) and normalised precision (value at 0.20)."""
    name = f"{report.dataset} ({len(report.sequences)} sequences, {report.protocol})"
    s = [t.summary for t in report.trackers]
    labels = [t.label for t in report.trackers]

    def ranked(value: str, curve: str, x: Any) -> list[tuple[str, Any, Any]]:
        order = sorted(range(len(s)), key=lambda i: -getattr(s[i], value))
        return [(f"{labels[i]} [{getattr(s[i], value):.1f}]", x, getattr(s[i], curve)) for i in order]

    return [
        PlotSpec(
            "success",
            f"Success plot: {name}",
            "Overlap threshold",
            "Success rate",
            ranked("auc", "success_curve", report.overlap_thresholds),
        ),
        PlotSpec(
            "precision",
            f"Precision plot: {name}",
            "Location error threshold (px)",
            "Precision",
            ranked("precision", "precision_curve", CENTER_THRESHOLDS),
        ),
        PlotSpec(
            "norm_precision",
            f"Normalised precision plot: {name}",
            "Location error threshold (target size)",
            "Normalised precision",
            ranked("norm_precision", "norm_precision_curve", report.norm_thresholds),
        ),
    ]


def write_plots(report: AnalysisReport, out_dir: str | Path, stem: str | None = None) -> list[Path]:
    """``<stem>_success.png``, ``_precision.png`` and ``_norm_precision.png``; returns the PNG paths."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or f"{report.dataset}_{report.protocol}"
    written = []
    for spec in plot_specs(report):
        fig = _figure(plt, spec)
        path = out / f"{stem}_{spec.key}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def svg_plots(report: AnalysisReport) -> dict[str, str]:
    """The same plots as inline ``<svg>`` markup (text kept as text, no external references), by key."""
    plt = _pyplot()
    out = {}
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "grm-bench"}):
        for spec in plot_specs(report):
            fig = _figure(plt, spec)
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None})
            plt.close(fig)
            text = buf.getvalue()
            out[spec.key] = text[text.index("<svg") :]
    return out
