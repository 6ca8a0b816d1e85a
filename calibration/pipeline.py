"""grm-calibrate end to end: collect crops -> quantise -> evaluate on held-out sequences -> speed -> report.

Progress goes through one callback, ``progress(stage, advance, total)``, so the CLI owns the progress bars; every
step also logs a note as it starts.

The crop cache stays beside ``--output`` (``calibration-cache/``, or ``--cache-dir``), visible where the user
works rather than hidden in a store that grows unseen: ``crops-<hash>.npz`` sets keyed by everything the crops
depend on, so a repeated run with the same model, data and sampling reuses them and other requests add their own.
Nothing else reads it; deleting the folder only costs the next run the collection time.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from grm.calibration import collect, quantize
from grm.calibration.evaluate import compare_on_sequence
from grm.calibration.report import build_report, write_report
from grm.calibration.sequences import TrackSequence, discover, split_holdout
from grm.calibration.speed import compare_speed
from grm.runtime import datasets
from grm.runtime.atomic import atomic_writer, is_stream, scratch_files, scratch_path_for, sha256_file
from grm.runtime.backends import open_model, trt_build
from grm.runtime.backends.manifest import manifest_path
from grm.runtime.cliapp import writing
from grm.runtime.errors import ConfigError, Interrupted, OutputError
from grm.runtime.interrupts import InterruptWatch, interrupted_by
from grm.runtime.progress import folder_bytes, megabytes, shell_word, wrote

log = logging.getLogger(__name__)
StageProgress = Callable[[str, int, int], None]
GATE_FAILED_TAG = "gate-failed"


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

    def __post_init__(self) -> None:
        datasets.check_threshold_options(self.threshold, self.dataset)  # the table grm-run and grm-bench use
        if not math.isfinite(self.max_auc_drop):
            raise ConfigError(f"--max-auc-drop must be a finite number of AUC points; got {self.max_auc_drop}")
        if self.samples < 1:
            raise ConfigError(f"--samples must be at least 1; got {self.samples}")

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
    cache_path: Path | None = None
    fp32_model: Path | None = None
    target: str | None = None

    @property
    def passed(self) -> bool:
        return bool(self.report["gate"]["passed"])

    def written(self) -> list[tuple[Path, str]]:
        """The files written, with what they are: the INT8 model and its report."""
        form = f"INT8 model{f', --target {self.target}' if self.target else ''}"
        return [
            (self.quantized.output, form if self.passed else f"{form}, failed the --max-auc-drop gate"),
            (self.report_path, "accuracy and speed report"),
        ]

    def cache_line(self) -> str | None:
        """Where the crop cache is, its size, and what to do with it (None when no cache was used)."""
        if self.cache_path is None:
            return None
        size = megabytes(folder_bytes(self.cache_path))
        advice = (
            f"{size}; the same command reuses it, --cache-dir DIR puts it elsewhere, "
            f"rm -r {shell_word(self.cache_path)} frees it"
        )
        if self.cache_hit:
            return f"crops from cache {self.cache_path}/ ({advice})"
        return wrote(self.cache_path, f"calibration crop cache, {advice}")

    def next_commands(self, plan: Path | None = None) -> list[str]:
        """What to run with the INT8 model (the engine when one was built): track, and time it against FP32."""
        model = shell_word(plan or self.quantized.output)
        lines = [f"grm-run SOURCE --model {model} --box x,y,w,h"]
        if self.fp32_model is not None:
            lines.append(
                f"grm-bench speed --engine {shell_word(self.fp32_model)} --engine {model} --source SOURCE --box x,y,w,h"
            )
        return lines


def _stage(progress: StageProgress | None, name: str) -> Callable[[int, int], None] | None:
    return None if progress is None else (lambda advance, total: progress(name, advance, total))


def gate_failed_path(output: Path) -> Path:
    """Where an INT8 model that lost more AUC than allowed is kept: ``x_int8.onnx`` -> ``x_int8.gate-failed.onnx``."""
    return output.with_name(f"{output.stem}.{GATE_FAILED_TAG}{output.suffix}")


def run(options: CalibrateOptions, progress: StageProgress | None = None) -> CalibrateOutcome:
    """Run every step; the INT8 model reaches ``--output`` only with its report and within ``--max-auc-drop``.

    The model is written under a hidden ``.partial`` name beside ``--output``, evaluated, and renamed once the
    report is written: to ``--output`` when the gate passes, else to :func:`gate_failed_path` (report beside it,
    ``report['gate']['passed']`` False). On Ctrl-C (:class:`Interrupted`) or an error no model is left behind;
    collected crops stay in the cache.
    """
    fp32_meta = quantize.check_fp32_export(options.model)
    threshold = datasets.resolve_threshold(fp32_meta.tracker, options.threshold, options.dataset)
    calib_seqs, held = split_holdout(discover(options.data), options.holdout or None)
    _check_writable_target(options.output)
    with InterruptWatch() as watch, scratch_files() as scratch:
        state = _RunState(watch, scratch)
        try:
            return _calibrate(options, progress, threshold, calib_seqs, held, state)
        except Interrupted:
            raise
        except BaseException as e:
            if not interrupted_by(watch, e):
                raise
            raise Interrupted(_interrupt_note(options, state.done)) from e


@dataclass
class _RunState:
    """The Ctrl-C watch, the temporary files to remove at the end, and the steps finished (for the Ctrl-C note)."""

    watch: InterruptWatch
    scratch: list[Path]
    done: list[str] = field(default_factory=list)

    def stop_if_requested(self) -> None:
        """Ctrl-C that a library swallowed still stops the run at the next step."""
        if self.watch.requested:
            raise KeyboardInterrupt


def _calibrate(
    options: CalibrateOptions,
    progress: StageProgress | None,
    threshold: float,
    calib_seqs: list[TrackSequence],
    held: list[TrackSequence],
    state: _RunState,
) -> CalibrateOutcome:
    """The steps of :func:`run`."""
    with writing(options.output):
        written = scratch_path_for(options.output)
    state.scratch.append(written)
    fp32 = open_model(options.model, backend="onnxruntime", threads=options.threads)
    try:
        log.info(
            "calibration crops: %d from %s (cache %s)",
            options.samples,
            ", ".join(s.name for s in calib_seqs[:3])
            + (f" and {len(calib_seqs) - 3} more" if len(calib_seqs) > 3 else ""),
            options.cache_path,
        )
        calib, hit = collect.load_or_collect(
            fp32, calib_seqs, samples=options.samples, threshold=threshold,
            model_sha256=sha256_file(options.model), cache_dir=options.cache_path,
            max_frames=options.max_frames, progress=_stage(progress, "collect crops"),
        )  # fmt: skip
        state.done.append("crops")
        if hit:
            log.info("reused %d cached crops from %s", len(calib), options.cache_path)
        state.stop_if_requested()
        calibrate = _stage(progress, "calibrate")
        _log_quantize_start(options.quantize, len(calib))
        with writing(options.output):
            result = quantize.quantize(
                options.model, calib, written, options.quantize,
                None if calibrate is None else (lambda n: calibrate(n, len(calib))),
            )  # fmt: skip
        state.stop_if_requested()
        int8 = open_model(written, backend="onnxruntime", threads=options.threads)
        try:
            evaluate = _stage(progress, "evaluate")
            comparisons = []
            for number, sequence in enumerate(held, start=1):
                log.info("evaluating INT8 against FP32 on held-out %s (%d of %d)", sequence.name, number, len(held))
                comparisons.append(compare_on_sequence(fp32, int8, sequence, threshold, options.eval_frames, evaluate))
        finally:
            int8.close()
    finally:
        fp32.close()
    state.stop_if_requested()
    feeds = [calib.feed(i) for i in range(min(len(calib), 8))]
    log.info("timing FP32 and INT8 on ONNX Runtime (CPU)")
    speed = compare_speed(options.model, written, feeds, options.threads, options.speed_repeats)
    state.stop_if_requested()
    context = _context(options, calib, result, threshold, [s.name for s in calib_seqs], [s.name for s in held])
    report = build_report(comparisons, max_auc_drop=options.max_auc_drop, context=context, speed=speed)
    target = options.output if report["gate"]["passed"] else gate_failed_path(options.output)
    report_path = options.report or (
        options.report_path if target == options.output else target.with_suffix(".report.json")
    )
    report["int8_model"] = str(target)
    _settle(written, target, report, report_path)
    return CalibrateOutcome(
        replace(result, output=target),
        report,
        report_path,
        hit,
        options.cache_path,
        options.model,
        options.quantize.target,
    )


def _log_quantize_start(options: quantize.QuantizeOptions, samples: int) -> None:
    if options.target == "tensorrt":
        log.info(
            "calibrating activation ranges (%s) on %d crops, then quantising (--target tensorrt)",
            options.method,
            samples,
        )
    else:
        log.info("quantising (--target %s)", options.target)


def _settle(written: Path, target: Path, report: dict[str, Any], report_path: Path) -> None:
    """Report first, then the model renamed into place (so a model at its path has its report); a device or FIFO
    target (written in place, where a write can fail) gets the model first."""
    with writing(target):
        if is_stream(target):
            with open(written, "rb") as src, atomic_writer(target) as out:
                shutil.copyfileobj(src, out)
    with writing(report_path):
        write_report(report, report_path)
    if not is_stream(target):
        with writing(target):
            os.replace(written, target)


def _check_writable_target(output: Path) -> None:
    if output.is_dir():
        raise OutputError(f"cannot write {output}: it is a folder; give the INT8 .onnx file to write")


def _interrupt_note(options: CalibrateOptions, done: list[str]) -> str:
    if "crops" not in done:
        return f"nothing was written to {options.output}; run the same command again"
    return (
        f"{options.output} was not written; the calibration crops are kept in {options.cache_path} and the "
        "same command reuses them"
    )


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


def engine_files(plan: Path) -> list[tuple[Path, str]]:
    """The files :func:`build_engine` wrote, with what they are."""
    return [(plan, "TensorRT INT8 engine"), (manifest_path(plan), "engine manifest")]


def build_engine(onnx_path: Path, plan_path: Path | None = None) -> Path:
    """Build ``<output>.plan`` (and its ``.plan.json`` manifest) from the Q/DQ model, as an INT8 engine.

    The runtime's TensorRT builder needs TensorRT and cuda-python on a GPU machine, not torch; a missing one is
    a one-line error that names the packages (installed beside onnxruntime, never onnxruntime-gpu with it).
    """
    plan = plan_path or onnx_path.with_suffix(".plan")
    log.info("building the TensorRT INT8 engine %s", plan)
    return trt_build.build_engine(onnx_path, plan).plan
