"""The whole ``grm-export`` run: resolve weights, export ONNX, prove parity, optionally build a TensorRT engine."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grm.export import parity
from grm.export.parity_data import crop_pairs
from grm.export.tensorrt_build import DEFAULT_WORKSPACE_BYTES, EngineBuild, build_engine, gpu_info, import_tensorrt
from grm.export.to_onnx import DEFAULT_OPSET, OnnxExport, check_opset, export_onnx
from grm.export.weights import resolve_checkpoint
from grm.runtime.atomic import sha256_file
from grm.runtime.backends import open_model
from grm.runtime.errors import ConfigError
from grm.train.checkpoint import load_checkpoint
from grm.train.config import get_config
from grm.train.model import GRM

log = logging.getLogger(__name__)

ENGINE_SUFFIXES = (".plan", ".engine")
Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total) during long steps (parity runs)."""


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


@dataclass(frozen=True)
class ExportResult:
    """What was written."""

    onnx: OnnxExport
    report: parity.ParityReport | None
    report_path: Path | None
    engine: EngineBuild | None
    engine_report: parity.ParityReport | None = None


def default_onnx_name(config: str, fp16: bool) -> Path:
    """``grm_<config>.onnx`` or ``grm_<config>_fp16.onnx`` in the current folder."""
    return Path(f"grm_{config}{'_fp16' if fp16 else ''}.onnx")


def output_paths(options: ExportOptions) -> tuple[Path, Path | None]:
    """(ONNX path, plan path or None). An output ending in .plan/.engine implies an engine next to its ONNX."""
    out = options.output
    if out is not None and out.suffix in ENGINE_SUFFIXES:
        return out.with_suffix(".onnx"), out
    onnx_path = out or default_onnx_name(options.config, options.fp16)
    if out is not None and out.suffix != ".onnx":
        raise ConfigError(f"--output {out} must end in .onnx, .plan or .engine")
    return onnx_path, onnx_path.with_suffix(".plan") if options.engine else None


def run_export(options: ExportOptions, progress: Progress | None = None) -> ExportResult:
    """Export, verify and build as requested.

    Raises:
        GrmError subclasses: unknown config, missing weights, lint/checker failure, ParityError, missing TensorRT.
    """
    config = get_config(options.config)
    check_opset(options.opset)
    onnx_path, plan_path = output_paths(options)
    if plan_path is not None:  # fail before minutes of export when TensorRT or the GPU is missing
        import_tensorrt()
        gpu_info()
    checkpoint = resolve_checkpoint(config.name, options.checkpoint, options.home)
    model = load_checkpoint(checkpoint, config)
    precision = "fp16" if options.fp16 else "fp32"
    log.info("exporting %s (%s) from %s", config.name, precision, checkpoint)
    exported = export_onnx(
        model,
        onnx_path,
        precision=precision,
        opset=options.opset,
        with_decisions=options.with_decisions,
        checkpoint_sha256=sha256_file(checkpoint),
        attention=options.attention,
    )
    report, report_file = None, None
    if options.verify:
        report, report_file = verify(exported, model, options, progress)
    engine, engine_report = None, None
    if plan_path is not None:
        engine = build_engine(onnx_path, plan_path, options.workspace_bytes, options.timing_cache)
        if options.verify:
            engine_report = verify_engine(engine, exported, model, options, progress)
    return ExportResult(exported, report, report_file, engine, engine_report)


def verify(
    exported: OnnxExport, model: GRM, options: ExportOptions, progress: Progress | None = None
) -> tuple[parity.ParityReport, Path]:
    """Parity of the written ONNX file against PyTorch; the JSON report is written before any ParityError."""
    pairs, source = crop_pairs(exported.metadata.tracker, options.parity_data)
    run = parity.ort_runner(parity.open_session(exported.path, options.threads))
    full = exported.with_decisions_graph
    decisions_run = parity.ort_runner(parity.open_session(full, options.threads)) if full else None
    stats = parity.compare(run, model, pairs, decisions_run=decisions_run, progress=_stage(progress, "parity"))
    report = parity.build_report(exported.path, exported.metadata.precision, stats, pairs, source)
    return report, parity.write_and_check(report)


def verify_engine(
    engine: EngineBuild, exported: OnnxExport, model: GRM, options: ExportOptions, progress: Progress | None = None
) -> parity.ParityReport:
    """Parity of the built plan (run by the runtime's TensorRT backend) against PyTorch, same crops and limits."""
    pairs, source = crop_pairs(exported.metadata.tracker, options.parity_data)
    backend = open_model(engine.plan, backend="tensorrt", config=exported.metadata.config)
    try:
        stats = parity.compare(backend.run, model, pairs, progress=_stage(progress, "engine parity"))
    finally:
        backend.close()
    subject = f"TensorRT {engine.tensorrt_version} engine"
    report = parity.build_report(engine.plan, engine.build.precision, stats, pairs, source, subject=subject)
    parity.write_and_check(report)
    return report


def _stage(progress: Progress | None, stage: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)
