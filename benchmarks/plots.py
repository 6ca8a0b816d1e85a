"""Success and precision plots as PNG (matplotlib is imported only here, with the Agg backend)."""

from __future__ import annotations

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


def _plot(plt: Any, path: Path, title: str, xlabel: str, ylabel: str, series: list[tuple[str, Any, Any]]) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for label, x, y in series:
        ax.plot(x, y, linewidth=1.8, label=label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, ylim=(0, 1), xlim=(x[0], x[-1]))
    ax.grid(True, linestyle=":")
    ax.legend(loc="lower left" if "Success" in title else "lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return path


def write_plots(report: AnalysisReport, out_dir: str | Path, stem: str | None = None) -> list[Path]:
    """Success (legend: AUC) and precision (legend: value at 20 px) plots; returns the PNG paths."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or f"{report.dataset}_{report.protocol}"
    order = sorted(report.trackers, key=lambda t: -t.summary.auc)
    x_iou = report.overlap_thresholds
    success = [(f"{t.label} [{t.summary.auc:.1f}]", x_iou, t.summary.success_curve) for t in order]
    by_prec = sorted(report.trackers, key=lambda t: -t.summary.precision)
    precision = [
        (f"{t.label} [{t.summary.precision:.1f}]", CENTER_THRESHOLDS, t.summary.precision_curve) for t in by_prec
    ]
    name = f"{report.dataset} ({len(report.sequences)} sequences, {report.protocol})"
    return [
        _plot(plt, out / f"{stem}_success.png", f"Success plot: {name}", "Overlap threshold", "Success rate", success),
        _plot(
            plt,
            out / f"{stem}_precision.png",
            f"Precision plot: {name}",
            "Location error threshold (px)",
            "Precision",
            precision,
        ),
    ]
