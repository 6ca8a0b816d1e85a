"""The whole ``grm-export`` run: resolve weights, export ONNX, prove parity, optionally build a TensorRT engine."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from grm.export import parity
from grm.export.options import DEFAULT_OPSET, check_opset
from grm.export.parity_data import CropPair, crop_pairs
from grm.export.to_onnx import OnnxExport, check_batch, export_onnx
from grm.export.weights import resolve_checkpoint
from grm.runtime.atomic import atomic_writer, is_stream, scratch_files, scratch_path_for, sha256_file
from grm.runtime.backends import open_model
from grm.runtime.backends.cuda_memory import gpu_info
from grm.runtime.backends.manifest import manifest_path
from grm.runtime.backends.trt_build import (
    DEFAULT_WORKSPACE_BYTES,
    BatchProfile,
    EngineBuild,
    build_engine,
    import_tensorrt,
)
from grm.runtime.cliapp import writing
from grm.runtime.errors import ConfigError, Interrupted, OutputError, ParityError
from grm.runtime.interrupts import InterruptWatch, interrupted_by
from grm.runtime.progress import shell_word
from grm.train.checkpoint import load_checkpoint
from grm.train.config import get_config
from grm.train.model import GRM

log = logging.getLogger(__name__)

ENGINE_SUFFIXES = (".plan", ".engine")
FAILED_TAG = "parity-failed"
Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total) during long steps (parity runs); every step also logs a note as it starts."""
Crops = tuple[list[CropPair], str]
"""Parity inputs and a description of where they come from (:func:`crop_pairs`)."""


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """What the user asked for (CLI options, already parsed)."""

    config: str
    checkpoint: Path | None = None
    output: Path | None = None
    fp16: bool = False
    engine: bool = False
    opset: int = DEFAULT_OPSET
    verify: bool = True
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
    with_decisions: bool = False
    attention: str = "exact"
    parity_data: Path | None = None
    timing_cache: Path | None = None
    threads: int = 0
    home: Path | None = None
    batch: int = 1
    batch_profile: BatchProfile | None = None


@dataclass(frozen=True)
class ExportResult:
    """What was written."""

    onnx: OnnxExport
    report: parity.ParityReport | None
    report_path: Path | None
    engine: EngineBuild | None
    engine_report: parity.ParityReport | None = None
    engine_report_path: Path | None = None

    def written(self) -> list[tuple[Path, str]]:
        """Every file this export wrote, with what it is: model (and its external weights), reports, engine."""
        meta = self.onnx.metadata
        batched = "" if meta.batch == 1 else f", batch {meta.batch or 'dynamic'}"
        files = [(self.onnx.path, f"{meta.precision}, opset {meta.opset}{batched}")]
        if external_data_path(self.onnx.path).is_file():
            files.append((external_data_path(self.onnx.path), "the model's weights; keep it beside the model"))
        if self.report_path is not None:
            files.append((self.report_path, "parity report"))
        if self.engine is not None:
            files.append((self.engine.plan, f"TensorRT {self.engine.tensorrt_version} engine"))
            files.append((self.engine.manifest, "engine manifest"))
        if self.engine_report_path is not None:
            files.append((self.engine_report_path, "engine parity report"))
        return files

    def next_command(self) -> str:
        """The command a user would run next: track a video with the new model (the engine when one was built)."""
        model = self.engine.plan if self.engine is not None else self.onnx.path
        return f"grm-run SOURCE --model {shell_word(model)} --box x,y,w,h"


def default_onnx_name(config: str, fp16: bool, batch: int = 1) -> Path:
    """``grm_<config>.onnx`` or ``grm_<config>_fp16.onnx`` in the current folder; a batched model adds
    ``_b<N>`` (``_bdyn`` for a dynamic batch), so it never replaces the batch-1 file."""
    tag = "" if batch == 1 else f"_b{batch}" if batch else "_bdyn"
    return Path(f"grm_{config}{tag}{'_fp16' if fp16 else ''}.onnx")


def output_paths(options: ExportOptions) -> tuple[Path, Path | None]:
    """(ONNX path, plan path or None). An output ending in .plan/.engine implies an engine next to its ONNX."""
    out = options.output
    if out is not None and out.suffix in ENGINE_SUFFIXES:
        return out.with_suffix(".onnx"), out
    onnx_path = out or default_onnx_name(options.config, options.fp16, options.batch)
    if out is not None and out.suffix != ".onnx":
        raise ConfigError(f"--output {out} must end in .onnx, .plan or .engine")
    return onnx_path, onnx_path.with_suffix(".plan") if options.engine else None


def run_export(options: ExportOptions, progress: Progress | None = None) -> ExportResult:
    """Export, verify and build as requested; a model reaches its final path only after it passed parity.

    Each model is written under a hidden ``.partial`` name beside its target, checked against PyTorch, and
    renamed into place on success. A model that fails parity is kept as ``<stem>.parity-failed<suffix>`` beside
    its report (ParityError); on Ctrl-C or any other error nothing new is left at the final paths.

    Raises:
        GrmError subclasses: unknown config, missing weights, lint/checker failure, ParityError, missing TensorRT,
        OutputError (an output that cannot be written), Interrupted (Ctrl-C; says what was kept).
    """
    config = get_config(options.config)
    check_opset(options.opset)
    check_batch(options.batch, options.batch_profile)
    onnx_path, plan_path = output_paths(options)
    if plan_path is not None:  # fail before minutes of export when TensorRT or the GPU is missing
        import_tensorrt()
        gpu_info()
    checkpoint = resolve_checkpoint(config.name, options.checkpoint, options.home)
    log.info("loading the %s weights from %s", config.name, checkpoint)
    model = load_checkpoint(checkpoint, config)
    with InterruptWatch() as watch, scratch_files() as pending:
        steps = _ExportSteps(model, checkpoint, options, progress, watch, pending)
        try:
            exported, report, report_file = steps.onnx(onnx_path)
            engine, engine_report, engine_report_file = (
                steps.engine(exported, plan_path) if plan_path is not None else (None, None, None)
            )
        except (Interrupted, ParityError):
            raise
        except BaseException as e:
            if not interrupted_by(watch, e):
                raise
            raise Interrupted(_interrupt_note(onnx_path, plan_path, steps.kept)) from e
    return ExportResult(exported, report, report_file, engine, engine_report, engine_report_file)


@dataclass
class _ExportSteps:
    """The steps of :func:`run_export` once the weights are loaded.

    ``pending`` holds the temporary files to remove at the end, ``kept`` the final paths written so far, and
    ``watch`` the Ctrl-C watch whose flag is checked between steps.
    """

    model: GRM
    checkpoint: Path
    options: ExportOptions
    progress: Progress | None
    watch: InterruptWatch
    pending: list[Path]
    kept: list[Path] = field(default_factory=list)
    crops: Crops | None = None

    def onnx(self, target: Path) -> tuple[OnnxExport, parity.ParityReport | None, Path | None]:
        """Export to a temporary file, check parity, then rename to ``target`` (see :func:`settle`)."""
        options = self.options
        precision = "fp16" if options.fp16 else "fp32"
        if options.verify:  # a bad --parity-data fails before minutes of export
            log.info("cutting parity crops (%s)", options.parity_data or "generated clip")
            self.crops = crop_pairs(self.model.config.tracker, options.parity_data)
        log.info("exporting %s to ONNX (%s, opset %d)", self.model.config.name, precision, options.opset)
        written = self._reserve(target)
        self.pending.append(external_data_path(written))
        with writing(target):
            exported = export_onnx(
                self.model,
                written,
                precision=precision,
                opset=options.opset,
                with_decisions=options.with_decisions,
                checkpoint_sha256=sha256_file(self.checkpoint),
                attention=options.attention,
                batch=options.batch,
                batch_profile=options.batch_profile,
            )
        self._stop_if_requested()
        report, report_file = None, None
        if options.verify:
            report = verify(exported, self.model, options, self.progress, name=target, crops=self.crops)
            self._stop_if_requested()
            report_file = settle(report, written, target)
        else:
            with writing(target):
                move_onnx(written, target)
        self.kept.append(target)
        return replace(exported, path=target), report, report_file

    def engine(self, exported: OnnxExport, target: Path) -> tuple[EngineBuild, parity.ParityReport | None, Path | None]:
        """Build a plan from the verified ONNX into a temporary file, check parity, then rename to ``target``;
        returns the build, its parity report and the report's path."""
        options = self.options
        written = self._reserve(target)
        self.pending.append(manifest_path(written))
        log.info("building the TensorRT engine %s (minutes for large models)", target)
        with writing(target):
            engine = build_engine(exported.path, written, options.workspace_bytes, options.timing_cache)
        self._stop_if_requested()
        report, report_file = None, None
        if options.verify:
            report = verify_engine(engine, exported, self.model, options, self.progress, name=target, crops=self.crops)
            self._stop_if_requested()
            report_file = settle(report, written, target)
        else:
            with writing(target):
                move_plan(written, target)
        self.kept.append(target)
        return replace(engine, plan=target, manifest=manifest_path(target)), report, report_file

    def _reserve(self, target: Path) -> Path:
        """A new hidden ``.partial`` file beside ``target`` (its folder created), removed unless renamed."""
        if target.is_dir():
            raise OutputError(f"cannot write {target}: it is a folder")
        with writing(target):
            path = scratch_path_for(target)
        self.pending.append(path)
        return path

    def _stop_if_requested(self) -> None:
        """Ctrl-C that a library swallowed (the exporter catches and wraps it) still stops the export."""
        if self.watch.requested:
            raise KeyboardInterrupt


def verify(
    exported: OnnxExport,
    model: GRM,
    options: ExportOptions,
    progress: Progress | None = None,
    name: Path | None = None,
    crops: Crops | None = None,
) -> parity.ParityReport:
    """Parity of the written ONNX file against PyTorch; the report names ``name`` (default: the file checked).

    ``crops``: the (pairs, source) of :func:`crop_pairs`, when already prepared.
    """
    pairs, source = crops or crop_pairs(exported.metadata.tracker, options.parity_data)
    _log_parity_start("ONNX Runtime (CPU)", pairs)
    run = parity.ort_runner(parity.open_session(exported.path, options.threads))
    full = exported.with_decisions_graph
    decisions_run = parity.ort_runner(parity.open_session(full, options.threads)) if full else None
    batch = parity.parity_batch(exported.metadata)
    stats = parity.compare(
        run, model, pairs, decisions_run=decisions_run, progress=_stage(progress, "parity"), batch=batch
    )
    report = parity.build_report(name or exported.path, exported.metadata.precision, stats, pairs, source, batch=batch)
    _log_parity_end(report)
    return report


def verify_engine(
    engine: EngineBuild,
    exported: OnnxExport,
    model: GRM,
    options: ExportOptions,
    progress: Progress | None = None,
    name: Path | None = None,
    crops: Crops | None = None,
) -> parity.ParityReport:
    """Parity of the built plan (run by the runtime's TensorRT backend) against PyTorch, same crops and limits."""
    pairs, source = crops or crop_pairs(exported.metadata.tracker, options.parity_data)
    _log_parity_start("the TensorRT engine", pairs)
    backend = open_model(engine.plan, backend="tensorrt", config=exported.metadata.config)
    try:
        batch = parity.parity_batch(backend.metadata)
        stats = parity.compare(backend.run, model, pairs, progress=_stage(progress, "engine parity"), batch=batch)
    finally:
        backend.close()
    subject = f"TensorRT {engine.tensorrt_version} engine"
    report = parity.build_report(
        name or engine.plan, engine.build.precision, stats, pairs, source, subject=subject, batch=batch
    )
    _log_parity_end(report)
    return report


def _log_parity_start(subject: str, pairs: list[CropPair]) -> None:
    thresholds = ", ".join(f"{t:g}" for t in parity.DEFAULT_THRESHOLDS)
    log.info("parity of %s against PyTorch: %d crop pairs at thresholds %s", subject, len(pairs), thresholds)


def _log_parity_end(report: parity.ParityReport) -> None:
    log.info("parity %s", "passed" if report.passed else "FAILED (see the report)")


def failed_path(path: Path) -> Path:
    """Where a model that failed parity is kept: ``grm_x.onnx`` -> ``grm_x.parity-failed.onnx``."""
    return path.with_name(f"{path.stem}.{FAILED_TAG}{path.suffix}")


def settle(report: parity.ParityReport, written: Path, target: Path) -> Path:
    """Put a checked model where it belongs; return its report's path.

    Passed: the report is written, then the model is renamed to ``target`` (last, so a model at its final path
    always has its report). Failed: the model goes to :func:`failed_path` beside a report naming it, and
    ParityError is raised.
    """
    move = move_plan if target.suffix in ENGINE_SUFFIXES else move_onnx
    destination = target if report.passed else failed_path(target)
    if report.passed and is_stream(destination):  # written in place, where it can fail: no report without it
        with writing(destination):
            move(written, destination)
        with writing(parity.report_path(destination)):
            return parity.write_and_check(report)
    with writing(destination):
        if report.passed:
            report_file = parity.write_and_check(report)
            move(written, destination)
            return report_file
        move(written, destination)
    with writing(parity.report_path(destination)):
        return parity.write_and_check(replace(report, model=str(destination)))


def external_data_path(model: Path) -> Path:
    """The weights file of a model saved with external data (``<name>.data``, see :mod:`grm.export.to_onnx`)."""
    return model.with_name(model.name + ".data")


def move_onnx(source: Path, target: Path) -> None:
    """Rename an ONNX file (and its ``.data`` weights, relinked) to ``target``; a device or FIFO is written in place."""
    data = external_data_path(source)
    if is_stream(target):
        if data.exists():
            raise OutputError(f"{target}: a model with external weights ({data.name}) needs a regular file")
        _copy_into(source, target)
        return
    if not data.exists():
        os.replace(source, target)
        return
    proto = onnx.load(str(source), load_external_data=False)
    location = external_data_path(target).name
    for tensor in onnx.external_data_helper._get_all_tensors(proto):
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    os.replace(data, external_data_path(target))
    onnx.save_model(proto, str(source))
    os.replace(source, target)


def move_plan(source: Path, target: Path) -> None:
    """Rename a plan and its manifest to ``target`` (manifest first, so a plan never lacks one)."""
    if is_stream(target):
        raise OutputError(f"{target}: a TensorRT plan and its manifest need a regular file")
    os.replace(manifest_path(source), manifest_path(target))
    os.replace(source, target)


def _copy_into(source: Path, target: Path) -> None:
    with open(source, "rb") as src, atomic_writer(target) as out:
        shutil.copyfileobj(src, out)
    source.unlink()


def _interrupt_note(onnx_path: Path, plan_path: Path | None, kept: list[Path]) -> str:
    if not kept:
        return f"nothing was written to {onnx_path}; run the same command again"
    return f"kept {onnx_path} (parity passed); the engine {plan_path} was not written; run the same command again"


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)
