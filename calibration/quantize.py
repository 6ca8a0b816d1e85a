"""FP32 GRM export -> INT8 ONNX in one of two forms (``QuantizeOptions.target``, recorded in the metadata).

``tensorrt``: explicit Q/DQ from ONNX Runtime static quantisation, in TensorRT's form. Settings (TensorRT
accepts only symmetric INT8, zero point 0, per-channel weights on the output axis): QDQ format, INT8
activations and weights, ``ActivationSymmetric``/``WeightSymmetric``, per-channel weights, no bias quantisation,
weights kept as FP32 initializers behind a Q/DQ pair (``AddQDQPairToWeight``), as the TensorRT-guided options
of NVIDIA's ModelOpt pass them to ONNX Runtime. Only Conv/MatMul/Gemm are quantised.

``quant_pre_process`` (shape inference + graph clean-up, which fuses MatMul+Add into Gemm) runs first, without
symbolic shape inference when that fails; when both fail the graph is quantised as exported, and the result
records which happened.

``cpu``: the fastest form on ONNX Runtime CPU (calibration/README.md has the profile study). Dynamic
quantisation of MatMul/Gemm: int8 per-channel symmetric weights, uint8 activations quantised per call from
their own range, which ONNX Runtime fuses into ``DynamicQuantizeMatMul`` (u8 x s8, the VNNI ``vpdpbusd``
path) with the float result and bias in the same kernel. The attention products (q.k^T, p.v) are quantised
the same way, their second operand per call too (``DynamicQuantizeLinear``). No Q/DQ nodes stay in the graph
and no activation range is calibrated; the exclusions apply as for ``tensorrt``; Conv stays FP32.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from numpy.typing import NDArray

from grm.calibration.collect import CalibrationSet
from grm.calibration.graph import QUANT_OP_TYPES, ensure_node_names, resolve_exclusions
from grm.runtime import contract
from grm.runtime.atomic import atomic_path
from grm.runtime.backends.io_check import parse_metadata
from grm.runtime.errors import ArtifactMismatchError, BackendUnavailableError, InputError
from grm.runtime.params import METADATA_KEY, ModelMetadata

log = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_EXCLUDE: tuple[str, ...] = ("@predictor", "@head")
"""Measured on the tiny fixture model over real sequences (calibration/README.md has the table)."""
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
INTEGER_OPS = ("MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul")
"""Ops of the ``cpu`` form (before and after ONNX Runtime's fusion): their presence means already INT8."""
TARGETS: Mapping[str, str] = {
    "tensorrt": "static symmetric Q/DQ: int8 activations (calibrated ranges), int8 per-channel weights",
    "cpu": "dynamic: uint8 activations quantised per call, int8 per-channel weights (DynamicQuantizeMatMul)",
}
"""``--target`` -> the form written (also stored in the metadata)."""
DYNAMIC_OP_TYPES = ("MatMul", "Gemm")
CALIBRATION_CHUNK = 4
"""Samples per calibration pass: the calibrator holds every intermediate tensor of a pass in memory."""


@dataclass(frozen=True, kw_only=True)
class QuantizeOptions:
    """How to quantise.

    Attributes:
        target: ``tensorrt`` (symmetric Q/DQ) or ``cpu`` (dynamic, fastest on ONNX Runtime CPU); see the module.
        method: activation range calibration: ``minmax``, ``entropy`` or ``percentile`` (``tensorrt`` only).
        exclude: nodes kept in FP32: ``@group`` names or shell patterns on node names / op types.
        op_types: op types that get Q/DQ nodes.
        percentile: kept share of the histogram for ``percentile`` (in percent).
        preprocess: run ``quant_pre_process`` first.
        quantize_outputs: also put Q/DQ on the outputs of quantised ops. On: ONNX Runtime CPU fuses
            DQ -> Gemm -> Q into QGemm only with the output pair; without it vitb_256 INT8 ran 0.8x FP32 speed.
    """

    target: str = "tensorrt"
    method: str = "minmax"
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    op_types: tuple[str, ...] = QUANT_OP_TYPES
    percentile: float = 99.999
    preprocess: bool = True
    quantize_outputs: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"--method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.target not in TARGETS:
            raise InputError(f"--target {self.target!r} is not one of {', '.join(TARGETS)}")
        if self.target == "cpu" and self.method != "minmax":
            raise InputError(
                f"--method {self.method} applies to --target tensorrt; the cpu form quantises activations per call"
            )


@dataclass(frozen=True)
class QuantizeResult:
    """What quantisation did: the written model's metadata, excluded and quantised nodes, pre-processing mode."""

    output: Path
    metadata: ModelMetadata
    excluded: list[str]
    quantized: list[str]
    preprocessed: str
    extra: Mapping[str, Any] = field(default_factory=dict)


def import_quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError as e:
        raise BackendUnavailableError(
            "calibration needs onnxruntime and onnx: pip install 'grm-tracker[calibrate]'"
        ) from e
    return quantization


def check_fp32_export(path: str | Path) -> ModelMetadata:
    """Metadata of an FP32 grm export; anything else (foreign ONNX, FP16, already INT8) -> one-line error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as e:
        raise ArtifactMismatchError(f"{path} is not an ONNX file ({e}); pass the FP32 .onnx from grm-export") from e
    props = {p.key: p.value for p in model.metadata_props}
    metadata = parse_metadata(props.get(METADATA_KEY), str(path))
    quantised = any(n.op_type in (*QDQ_OPS, *INTEGER_OPS) for n in model.graph.node)
    if metadata.precision != "fp32" or quantised:
        raise ArtifactMismatchError(
            f"{path} is a {metadata.precision} model{' with INT8 nodes' if quantised else ''}; calibration starts "
            f"from the FP32 export (grm-export's default, without --fp16): grm-export --config {metadata.config}"
        )
    names = {i.name for i in model.graph.input} - {i.name for i in model.graph.initializer}
    if names != set(contract.INPUT_NAMES):
        raise ArtifactMismatchError(
            f"{path} has inputs {sorted(names)}, not a grm model's {list(contract.INPUT_NAMES)}"
        )
    return metadata


class CropReader:
    """``CalibrationDataReader`` over cached crops ``indices``; ``progress(n)`` after each n samples handed out.

    A static batch-N model (``batch`` N) gets N crops per feed, the last feed padded by repeating its last crop
    (min/max ranges are unchanged by the repeat); batch 1 and dynamic models (0) get one crop per feed.
    """

    def __init__(
        self, calib: CalibrationSet, indices: range, progress: Callable[[int], None] | None = None, batch: int = 1
    ) -> None:
        self._calib = calib
        self._rows = max(batch, 1)
        self._groups = iter([indices[i : i + self._rows] for i in range(0, len(indices), self._rows)])
        self._progress = progress

    def get_next(self) -> dict[str, NDArray[np.float32]] | None:
        group = next(self._groups, None)
        if group is None:
            return None
        if self._progress is not None:
            self._progress(len(group))
        return self._calib.feed_rows(group, self._rows)


PREPROCESS_ERRORS = (RuntimeError, ValueError, KeyError, TypeError, AssertionError, onnx.checker.ValidationError)


def preprocess(src: Path, dst: Path) -> str:
    """``quant_pre_process`` into ``dst``; returns how: ``full``, ``no-symbolic-shapes`` or ``none``.

    ONNX Runtime's symbolic shape inference fails on some exporters' graphs (dynamo's Expand), so a second try
    skips it; the graph clean-up (MatMul+Add -> Gemm) still runs. When both fail ``dst`` is a plain copy.
    """
    quantization = import_quantization()
    for mode, skip_symbolic in (("full", False), ("no-symbolic-shapes", True)):
        try:
            quantization.quant_pre_process(str(src), str(dst), skip_symbolic_shape=skip_symbolic)
            return mode
        except PREPROCESS_ERRORS as e:
            log.info("quant_pre_process (%s) failed: %s: %s", mode, type(e).__name__, e)
    log.warning("quant_pre_process failed on this graph; quantising it as exported")
    onnx.save(onnx.load(str(src)), str(dst))
    return "none"


def _calibrator_options(options: QuantizeOptions) -> dict[str, Any]:
    # ONNX Runtime's entropy default (128 bins into 128 levels) can only return the min-max range;
    # 2048 histogram bins into 128 levels is TensorRT's entropy calibration.
    bins = {"num_bins": 2048, "num_quantized_bins": 128} if options.method != "minmax" else {}
    return {"symmetric": True, "percentile": options.percentile, **bins}


def calibrate_ranges(
    model: Path,
    calib: CalibrationSet,
    options: QuantizeOptions,
    workdir: Path,
    progress: Callable[[int], None] | None,
    batch: int = 1,
) -> Any:
    """Activation ranges (``TensorsData``) over all crops, fed in chunks so memory stays bounded; ``batch`` is the
    model's (crops per feed, see :class:`CropReader`)."""
    q = import_quantization()
    from onnxruntime.quantization.calibrate import create_calibrator

    calibrator = create_calibrator(
        model, list(options.op_types), augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=_method(q, options.method), extra_options=_calibrator_options(options),
    )  # fmt: skip
    rows = max(batch, 1)
    step = max(rows, CALIBRATION_CHUNK // rows * rows)  # whole feeds per pass, about CALIBRATION_CHUNK crops
    for start in range(0, len(calib), step):
        chunk = range(start, min(start + step, len(calib)))
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram collectors print() their settings
            calibrator.collect_data(CropReader(calib, chunk, progress, batch))
    with contextlib.redirect_stdout(io.StringIO()):
        return calibrator.compute_data()


def _method(q: Any, name: str) -> Any:
    return {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
            "percentile": q.CalibrationMethod.Percentile}[name]  # fmt: skip


class _DropAdvice(logging.Filter):
    """Drops ONNX Runtime's 'consider pre-processing' advice: :func:`preprocess` already tried and logged why not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quiet_advice() -> Iterator[None]:
    root = logging.getLogger()
    advice = _DropAdvice()
    handlers = [root, *root.handlers]
    for h in handlers:
        h.addFilter(advice)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(advice)


def quantize_static_qdq(
    src: Path, dst: Path, ranges_file: Path, excluded: Sequence[str], options: QuantizeOptions
) -> None:
    """Run ``quantize_static`` on precomputed ranges with the TensorRT-friendly settings of the module docstring."""
    q = import_quantization()
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "AddQDQPairToWeight": True,
        "DedicatedQDQPair": False,
        "ForceQuantizeNoInputCheck": True,
        "OpTypesToExcludeOutputQuantization": [] if options.quantize_outputs else list(options.op_types),
        # Output-channel axes; Gemm's follows its transB attribute (ONNX Runtime picks it).
        "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1, "MatMul": 1},
    }
    with _quiet_advice():
        _quantize_static(q, src, dst, ranges_file, excluded, options, extra)


def _quantize_static(
    q: Any, src: Path, dst: Path, ranges_file: Path, excluded: Sequence[str], options: QuantizeOptions, extra: dict
) -> None:
    q.quantize_static(
        str(src), str(dst), None, calibration_cache_path=str(ranges_file),
        quant_format=q.QuantFormat.QDQ, per_channel=True, reduce_range=False,
        activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
        op_types_to_quantize=list(options.op_types), nodes_to_exclude=list(excluded),
        calibrate_method=_method(q, options.method), extra_options=extra,
    )  # fmt: skip


def quantize_dynamic_cpu(src: Path, dst: Path, excluded: Sequence[str], options: QuantizeOptions) -> None:
    """The ``cpu`` form (module docstring): dynamic u8 x s8 MatMul/Gemm, per-channel where B is a weight.

    In dynamic mode ONNX Runtime first rewrites each Gemm into a MatMul named ``<gemm>_MatMul`` (+ Add), so an
    excluded Gemm is passed under both names.
    """
    q = import_quantization()
    op_types = [t for t in options.op_types if t in DYNAMIC_OP_TYPES]
    with _quiet_advice():
        q.quantize_dynamic(
            str(src), str(dst), op_types_to_quantize=op_types, per_channel=True, reduce_range=False,
            weight_type=q.QuantType.QInt8, nodes_to_exclude=[*excluded, *(f"{n}_MatMul" for n in excluded)],
            extra_options={"MatMulConstBOnly": False},  # the attention products too (README: the study)
        )  # fmt: skip


def quantized_nodes(model: onnx.ModelProto, op_types: Sequence[str]) -> list[str]:
    """Nodes that run in INT8: ``op_types`` fed by a DequantizeLinear (``tensorrt``), integer MatMul/Conv (``cpu``)."""
    producer = {out: n for n in model.graph.node for out in n.output}
    return [
        n.name
        for n in model.graph.node
        if n.op_type in ("MatMulInteger", "ConvInteger")
        or (n.op_type in op_types and n.input and getattr(producer.get(n.input[0]), "op_type", "") == QDQ_OPS[1])
    ]


def int8_metadata(fp32: ModelMetadata, calib: CalibrationSet, options: QuantizeOptions, excluded: int) -> ModelMetadata:
    """The FP32 record, marked int8, with the calibration manifest hash and settings in ``extra``."""
    extra = dict(fp32.extra)
    extra["calibration"] = {
        "manifest_hash": calib.hash,
        "samples": len(calib),
        "threshold": calib.threshold,
        "target": options.target,
        "form": TARGETS[options.target],
        "method": options.method if options.target == "tensorrt" else "dynamic",
        "exclude": list(options.exclude),
        "excluded_nodes": excluded,
        "fp32_checkpoint_sha256": fp32.checkpoint_sha256,
    }
    return replace(fp32, precision="int8", extra=extra)


def save_ranges(ranges: Any, path: Path) -> None:
    """Write calibration ranges in the cache format ``quantize_static(calibration_cache_path=...)`` reads."""
    try:
        from onnxruntime.quantization.calibrate import save_tensors_data
    except ImportError as e:
        raise BackendUnavailableError(
            "this onnxruntime cannot reuse calibration ranges (no save_tensors_data); upgrade: pip install -U onnxruntime"
        ) from e
    save_tensors_data(ranges, path)


def write_metadata(model: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Replace the ``grm`` metadata record of ``model``."""
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata.to_json()


def quantize(
    model_path: str | Path,
    calib: CalibrationSet,
    output: str | Path,
    options: QuantizeOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> QuantizeResult:
    """Quantise an FP32 grm export in the ``options.target`` form and write the INT8 model atomically.

    ``calib`` gives the activation ranges of the ``tensorrt`` form; the ``cpu`` form only records its hash.
    """
    options = options or QuantizeOptions()
    fp32 = check_fp32_export(model_path)
    with tempfile.TemporaryDirectory(prefix="grm-calib-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # The cpu form needs no shapes, and ONNX Runtime fuses MatMul + bias Add itself when the session loads.
        static = options.target == "tensorrt"
        done = preprocess(Path(model_path), pre) if options.preprocess and static else "none"
        model = onnx.load(str(pre if done != "none" else model_path))
        ensure_node_names(model)
        onnx.save(model, str(pre))
        excluded = resolve_exclusions(model, options.exclude)
        raw = Path(tmp) / "int8.onnx"
        if static:
            ranges = calibrate_ranges(pre, calib, options, Path(tmp), progress, fp32.batch)
            ranges_file = Path(tmp) / "ranges.json"
            save_ranges(ranges, ranges_file)
            quantize_static_qdq(pre, raw, ranges_file, excluded, options)
        else:
            quantize_dynamic_cpu(pre, raw, excluded, options)
        result_model = onnx.load(str(raw))
    metadata = int8_metadata(fp32, calib, options, len(excluded))
    write_metadata(result_model, metadata)
    with atomic_path(output) as tmp_out:
        onnx.save(result_model, str(tmp_out))
    quantized = quantized_nodes(result_model, options.op_types)
    log.info("quantised %d nodes (%s form), kept %d in FP32", len(quantized), options.target, len(excluded))
    return QuantizeResult(Path(output), metadata, excluded, quantized, done)
