"""grm-calibrate end to end: collect crops -> quantise -> evaluate on held-out sequences -> speed -> report.

Progress goes through one callback, ``progress(stage, advance, total)``, so the CLI owns the progress bars.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grm.calibration import collect, quantize
from grm.calibration.evaluate import compare_on_sequence
from grm.calibration.report import build_report, write_report
from grm.calibration.sequences import discover, split_holdout
from grm.calibration.speed import compare_speed
from grm.runtime.atomic import sha256_file
from grm.runtime.backends import open_model
from grm.runtime.errors import BackendUnavailableError

log = logging.getLogger(__name__)
StageProgress = Callable[[str, int, int], None]

# The engine is built by the export package's TensorRT builder in a child process: grm.calibration never
# imports grm.export (it works without torch), and grm-export itself starts from a checkpoint.
ENGINE_SNIPPET = (
    "import sys; from grm.export.tensorrt_build import build_engine; build_engine(sys.argv[1], sys.argv[2])"
)


@dataclass(frozen=True, kw_only=True)
class CalibrateOptions:
    """Everything grm-calibrate was asked to do (paths, sampling, quantisation, gate)."""

    model: Path
    data: tuple[Path, ...]
    output: Path
    samples: int = 128
    quantize: quantize.QuantizeOptions = quantize.QuantizeOptions()
    max_auc_drop: float = 1.0
    holdout: tuple[str, ...] = ()
    threshold: float | None = None
    dataset: str | None = None
    cache_dir: Path | None = None
    max_frames: int | None = None
    eval_frames: int | None = None
    threads: int | None = None
    speed_repeats: int = 10
    report: Path | None = None

    @property
    def report_path(self) -> Path:
        return self.report or self.output.with_suffix(".report.json")

    @property
    def cache_path(self) -> Path:
        return self.cache_dir or self.output.parent / "calibration-cache"


@dataclass(frozen=True)
class CalibrateOutcome:
    """What was written, and the report (``report['gate']['passed']`` decides the exit status)."""

    quantized: quantize.QuantizeResult
    report: dict[str, Any]
    report_path: Path
    cache_hit: bool


def _stage(progress: StageProgress | None, name: str) -> Callable[[int, int], None] | None:
    return None if progress is None else (lambda advance, total: progress(name, advance, total))


def run(options: CalibrateOptions, progress: StageProgress | None = None) -> CalibrateOutcome:
    """Run every step; the report is written even when the gate fails."""
    fp32_meta = quantize.check_fp32_export(options.model)
    calib_seqs, held = split_holdout(discover(options.data), options.holdout or None)
    threshold = options.threshold if options.threshold is not None else fp32_meta.tracker.threshold_for(options.dataset)
    fp32 = open_model(options.model, backend="onnxruntime", threads=options.threads)
    try:
        calib, hit = collect.load_or_collect(
            fp32, calib_seqs, samples=options.samples, threshold=threshold,
            model_sha256=sha256_file(options.model), cache_dir=options.cache_path,
            max_frames=options.max_frames, progress=_stage(progress, "collect crops"),
        )  # fmt: skip
        calibrate = _stage(progress, "calibrate")
        result = quantize.quantize(
            options.model, calib, options.output, options.quantize,
            None if calibrate is None else (lambda n: calibrate(n, len(calib))),
        )  # fmt: skip
        int8 = open_model(options.output, backend="onnxruntime", threads=options.threads)
        try:
            evaluate = _stage(progress, "evaluate")
            comparisons = [compare_on_sequence(fp32, int8, s, threshold, options.eval_frames, evaluate) for s in held]
        finally:
            int8.close()
    finally:
        fp32.close()
    feeds = [calib.feed(i) for i in range(min(len(calib), 8))]
    speed = compare_speed(options.model, options.output, feeds, options.threads, options.speed_repeats)
    context = _context(options, calib, result, threshold, [s.name for s in calib_seqs], [s.name for s in held])
    report = build_report(comparisons, max_auc_drop=options.max_auc_drop, context=context, speed=speed)
    write_report(report, options.report_path)
    return CalibrateOutcome(result, report, options.report_path, hit)


def _context(
    options: CalibrateOptions,
    calib: collect.CalibrationSet,
    result: quantize.QuantizeResult,
    threshold: float,
    calibrated_on: list[str],
    held_out: list[str],
) -> dict[str, Any]:
    return {
        "fp32_model": str(options.model),
        "int8_model": str(options.output),
        "config": result.metadata.config,
        "threshold": threshold,
        "calibration": {
            "manifest_hash": calib.hash,
            "samples": len(calib),
            "sequences": calibrated_on,
            "method": options.quantize.method,
            "exclude": list(options.quantize.exclude),
            "excluded_nodes": result.excluded,
            "quantized_nodes": len(result.quantized),
            "preprocessed": result.preprocessed,
        },
        "held_out": held_out,
        "eval_frames": options.eval_frames,
    }


def engine_command(onnx_path: Path, plan_path: Path) -> list[str]:
    """The child-process command that builds a TensorRT engine from the Q/DQ ONNX."""
    return [sys.executable, "-c", ENGINE_SNIPPET, str(onnx_path), str(plan_path)]


def build_engine(onnx_path: Path, plan_path: Path | None = None) -> Path:
    """Build ``<output>.plan`` with the export package's TensorRT builder in a child process."""
    plan = plan_path or onnx_path.with_suffix(".plan")
    if importlib.util.find_spec("grm.export") is None:
        raise BackendUnavailableError(
            "--engine needs the export package and TensorRT: pip install 'grm-tracker[export,gpu]' on an NVIDIA machine"
        )
    done = subprocess.run(engine_command(onnx_path, plan), capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise BackendUnavailableError(
            f"TensorRT engine build failed: {lines[-1] if lines else f'exit {done.returncode}'}"
        )
    return plan
