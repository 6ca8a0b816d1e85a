"""Build a serialized TensorRT engine (plain ``.plan``) from a grm ONNX file, plus its ``<plan>.json`` manifest.

Used by ``grm-export --engine`` (FP32/FP16 exports) and ``grm-calibrate --engine`` (INT8 Q/DQ models); it needs
TensorRT and a GPU, never torch or onnx. How each precision is built:

* INT8 (a Q/DQ model from grm-calibrate, metadata precision ``int8``): explicit quantization, built strongly
  typed on TensorRT 10 and 11, so every non-quantized layer keeps the ONNX's float type and the engine
  computes what the calibration report measured. No INT8 builder flag (it is an error on a strongly typed
  network and gone in TensorRT 11) and no calibrator.
* FP16 ONNX (``grm-export --fp16``): strongly typed, its FP32 islands are honoured.
* FP32 ONNX: TensorRT 11 strongly typed; TensorRT 10 weakly typed with TF32 off, or with the FP16 builder
  flag when ``fp16=True`` (TensorRT picks per-layer precision; refused on TensorRT 11).

A dynamic-batch ONNX (metadata batch 0, ``grm-export --batch dynamic``) gets one optimization profile: every
input's leading dimension ranges over :class:`BatchProfile` min..max and the kernels are tuned for opt; the
profile is the one asked for, else the one the export recorded, else the default. A static batch-N ONNX
builds a batch-N engine.

The manifest holds the ONNX's ``grm`` metadata (precision = the engine's; the batch and, for a dynamic engine,
``extra.batch_profile``) plus TensorRT version, GPU name,
compute capability and the plan's SHA-256 (:mod:`grm.runtime.backends.manifest`); it is written right after
the plan, before the optional timing cache, so a cache problem never leaves a plan without its manifest.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grm.runtime.atomic import atomic_write_bytes, sha256_bytes
from grm.runtime.backends.cuda_memory import gpu_info
from grm.runtime.backends.manifest import BATCH_PROFILE_KEY, EngineManifest, manifest_path, write_manifest
from grm.runtime.backends.onnx_metadata import read_onnx_metadata
from grm.runtime.errors import ArtifactMismatchError, BackendUnavailableError, ConfigError
from grm.runtime.params import ModelMetadata

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 4 << 30
PRECISIONS = ("fp32", "fp16", "int8")
TRT_INSTALL_HINT = (
    "install TensorRT 10 or 11 and cuda-python on a machine with an NVIDIA GPU (pip install tensorrt "
    "'cuda-python>=12.6.1' --extra-index-url https://pypi.nvidia.com; tensorrt-cu12 on CUDA 12 drivers), "
    "or write the ONNX model only by leaving out --engine"
)
GpuProbe = Callable[[], tuple[str, tuple[int, int]]]


@dataclass(frozen=True)
class BatchProfile:
    """The batch sizes a dynamic-batch TensorRT engine accepts (``min``..``max``) and tunes for (``opt``).

    Stored as ``{"min": .., "opt": .., "max": ..}`` under ``extra["batch_profile"]`` of the model metadata, so an
    engine built later from the same ONNX (or from its INT8 form) gets the profile chosen at export.
    """

    min: int = 1
    opt: int = 4
    max: int = 16

    def __post_init__(self) -> None:
        whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (self.min, self.opt, self.max))
        if not whole or not 1 <= self.min <= self.opt <= self.max:
            raise ConfigError(
                f"batch profile min {self.min}, opt {self.opt}, max {self.max} must be whole numbers with "
                "1 <= min <= opt <= max"
            )

    def to_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}

    def describe(self) -> str:
        """``min 1, opt 4, max 16`` (for messages)."""
        return f"min {self.min}, opt {self.opt}, max {self.max}"

    @classmethod
    def recorded(cls, metadata: ModelMetadata) -> BatchProfile | None:
        """The profile in ``metadata.extra["batch_profile"]``, or None when there is none.

        Raises:
            ArtifactMismatchError: a recorded profile that is not a valid one.
        """
        data = metadata.extra.get(BATCH_PROFILE_KEY)
        if data is None:
            return None
        try:
            return cls(**data)
        except (TypeError, ConfigError) as e:
            raise ArtifactMismatchError(f"the model's metadata has an unusable batch_profile {data!r} ({e})") from e


@dataclass(frozen=True)
class BuildPlan:
    """How the network is created: strongly typed or not, and whether the FP16 builder flag is set."""

    strongly_typed: bool
    fp16_flag: bool
    precision: str


@dataclass(frozen=True)
class EngineBuild:
    """A written plan and its manifest."""

    plan: Path
    manifest: Path
    tensorrt_version: str
    build: BuildPlan


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or one clear error saying how to get it."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as e:
        raise BackendUnavailableError(f"building an engine needs the tensorrt package ({e}); {TRT_INSTALL_HINT}") from e


def trt_major(trt: Any) -> int:
    """Major version of the imported TensorRT."""
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError as e:
        raise BackendUnavailableError(f"cannot read the TensorRT version {trt.__version__!r}") from e


def plan_build(trt: Any, onnx_precision: str, fp16: bool, config_name: str) -> BuildPlan:
    """Decide typing and flags from the TensorRT version, the ONNX precision and the request.

    Raises:
        BackendUnavailableError: TensorRT older than 10.
        ArtifactMismatchError: a precision other than fp32, fp16 or int8 in the metadata.
        ConfigError: FP16 requested on an FP32 ONNX under TensorRT 11, or on an INT8 model.
    """
    major = trt_major(trt)
    if major < 10:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} is too old; {TRT_INSTALL_HINT}")
    if onnx_precision not in PRECISIONS:
        raise ArtifactMismatchError(
            f"the model's metadata gives precision {onnx_precision!r}; engines are built from {', '.join(PRECISIONS)} "
            "models written by grm-export or grm-calibrate"
        )
    if onnx_precision == "int8":
        if fp16:
            raise ConfigError(
                "an INT8 Q/DQ model is built with the precision its graph states; FP16 cannot be added at build time"
            )
        return BuildPlan(strongly_typed=True, fp16_flag=False, precision="int8")
    if onnx_precision == "fp16":
        return BuildPlan(strongly_typed=True, fp16_flag=False, precision="fp16")
    if not fp16:
        return BuildPlan(strongly_typed=major >= 11, fp16_flag=False, precision="fp32")
    if major >= 11 or not hasattr(trt.BuilderFlag, "FP16"):
        raise ConfigError(
            f"TensorRT {trt.__version__} builds strongly typed networks only, so FP16 must come from the ONNX; "
            f"export an FP16 ONNX first: grm-export --config {config_name} --fp16 --engine"
        )
    return BuildPlan(strongly_typed=False, fp16_flag=True, precision="fp16")


def build_engine(
    onnx_path: str | Path,
    plan_path: str | Path,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache: str | Path | None = None,
    fp16: bool = False,
    profile: BatchProfile | None = None,
    *,
    trt: Any = None,
    gpu: GpuProbe = gpu_info,
) -> EngineBuild:
    """Parse ``onnx_path`` with TensorRT, build a serialized engine and write ``plan_path`` + ``<plan>.json``.

    Args:
        onnx_path: a model written by grm-export or grm-calibrate (its ``grm`` metadata goes into the manifest).
        plan_path: output plan, written atomically.
        workspace_bytes: builder workspace memory-pool limit in bytes.
        timing_cache: file to load the timing cache from (if present) and save it to afterwards; a cache that
            TensorRT rejects (another TensorRT or GPU) or that cannot be saved only costs a warning.
        fp16: FP16 from an FP32 ONNX (TensorRT 10 builder flag only).
        profile: batch sizes of a dynamic-batch ONNX's engine (default: the one its metadata records, else
            :class:`BatchProfile`'s defaults); refused for a static-batch ONNX.
        trt, gpu: injectable TensorRT module and GPU probe (tests).
    """
    trt = trt or import_tensorrt()
    metadata = read_onnx_metadata(onnx_path)
    build = plan_build(trt, metadata.precision, fp16, metadata.config)
    profile = batch_profile(metadata, profile, str(onnx_path))
    if workspace_bytes <= 0:
        raise ConfigError(f"workspace {workspace_bytes} bytes must be positive")
    gpu_name, capability = gpu()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = _create_builder(trt, logger)
    network = builder.create_network(_network_flags(trt, build))
    parser = trt.OnnxParser(network, logger)
    _parse(parser, Path(onnx_path))
    config = _builder_config(trt, builder, build, workspace_bytes)
    if profile is not None:
        _add_profile(builder, network, config, profile)
    cache_path = Path(timing_cache) if timing_cache else None
    if cache_path is not None:
        _attach_timing_cache(config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactMismatchError(
            f"TensorRT could not build an engine from {onnx_path}; see the TensorRT messages above"
        )
    data = bytes(serialized)
    plan = Path(plan_path)
    atomic_write_bytes(plan, data)
    manifest = EngineManifest(
        metadata=_engine_metadata(metadata, build, profile),
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu_name,
        compute_capability=(int(capability[0]), int(capability[1])),
        plan_sha256=sha256_bytes(data),
    )
    write_manifest(plan, manifest)
    if cache_path is not None:
        _save_timing_cache(config, cache_path)
    log.info("built %s (%s, TensorRT %s, %s)", plan, build.precision, trt.__version__, gpu_name)
    return EngineBuild(plan, manifest_path(plan), str(trt.__version__), build)


def batch_profile(metadata: ModelMetadata, requested: BatchProfile | None, source: str) -> BatchProfile | None:
    """The profile to build with: None for a static-batch model, else ``requested``, the recorded one or the default.

    Raises:
        ConfigError: a profile requested for a static-batch model.
    """
    if not metadata.dynamic_batch:
        if requested is not None:
            raise ConfigError(
                f"a batch profile ({requested.describe()}) applies to dynamic-batch models, but {source} has a "
                f"static batch of {metadata.batch}; export with --batch dynamic to build a profile"
            )
        return None
    return requested or BatchProfile.recorded(metadata) or BatchProfile()


def _add_profile(builder: Any, network: Any, config: Any, profile: BatchProfile) -> None:
    """One optimization profile: each input's leading (batch) dimension from ``profile``, the rest as parsed."""
    shapes = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        rest = tuple(int(d) for d in tuple(tensor.shape)[1:])
        shapes.set_shape(tensor.name, (profile.min, *rest), (profile.opt, *rest), (profile.max, *rest))
    if config.add_optimization_profile(shapes) < 0:
        raise ArtifactMismatchError(f"TensorRT refused the batch profile ({profile.describe()}); see its log above")


def _create_builder(trt: Any, logger: Any) -> Any:
    try:
        builder = trt.Builder(logger)
    except (TypeError, RuntimeError) as e:  # pybind11 "factory function returned nullptr" without a driver
        raise BackendUnavailableError(f"TensorRT could not create a builder ({e}); is a CUDA GPU present?") from e
    if builder is None:
        raise BackendUnavailableError("TensorRT could not create a builder; is a CUDA GPU present?")
    return builder


def _network_flags(trt: Any, build: BuildPlan) -> int:
    """TensorRT 11 is always strongly typed (its flag is deprecated and ignored); 10 needs the flag."""
    if build.strongly_typed and trt_major(trt) == 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def _parse(parser: Any, onnx_path: Path) -> None:
    """Parse by path (external weights resolve); log every parser error on its own line."""
    if parser.parse_from_file(str(onnx_path)):
        return
    errors = [str(parser.get_error(i)).strip() for i in range(parser.num_errors)]
    for line in errors:
        log.error("TensorRT ONNX parser: %s", line)
    first = errors[0].splitlines()[0] if errors else "no error reported"
    raise ArtifactMismatchError(
        f"TensorRT could not parse {onnx_path}: {len(errors)} error(s), first: {first}; "
        "check the file with grm-export's lint or re-export it"
    )


def _builder_config(trt: Any, builder: Any, build: BuildPlan, workspace_bytes: int) -> Any:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if build.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if build.precision in ("fp32", "int8") and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 layers compute in FP32, as ONNX Runtime measured them
    return config


def _attach_timing_cache(config: Any, path: Path) -> bool:
    """Load ``path`` into the builder; a cache TensorRT rejects is replaced by an empty one.

    ``create_timing_cache`` returns None for bytes it cannot read; ``set_timing_cache`` returns False for a
    cache from another TensorRT version or GPU (with ``ignore_mismatch=False``). Returns whether a cache is set.
    """
    try:
        previous = path.read_bytes() if path.is_file() else b""
    except OSError as e:
        log.warning("cannot read timing cache %s (%s); building without it", path, e.strerror or e)
        previous = b""
    if previous:
        cache = config.create_timing_cache(previous)
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            log.info("timing cache %s: %d bytes loaded", path, len(previous))
            return True
        log.warning("timing cache %s was rejected by TensorRT (another version or GPU); starting a new one", path)
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("TensorRT could not start a timing cache; building without one")
        return False
    return True


def _save_timing_cache(config: Any, path: Path) -> None:
    """Write the builder's timing cache; a missing cache or a failed write is a warning, the plan stands."""
    cache = config.get_timing_cache()
    if cache is None:
        log.warning("TensorRT has no timing cache to save; %s is unchanged", path)
        return
    serialized = cache.serialize()
    if serialized is None:
        log.warning("TensorRT could not serialize the timing cache; %s is unchanged", path)
        return
    try:
        atomic_write_bytes(path, bytes(serialized))
    except OSError as e:
        log.warning("cannot write timing cache %s (%s); the engine and its manifest are complete", path,
                    e.strerror or e)  # fmt: skip


def _engine_metadata(metadata: ModelMetadata, build: BuildPlan, profile: BatchProfile | None) -> ModelMetadata:
    """The ONNX metadata, with the engine's precision, how it was obtained and its batch profile (if dynamic)."""
    source = {"int8": "onnx q/dq nodes"}.get(build.precision, "fp16 builder flag" if build.fp16_flag else "onnx types")
    extra = {**dict(metadata.extra), "engine_precision_source": source}
    if profile is not None:
        extra[BATCH_PROFILE_KEY] = profile.to_dict()
    return dataclasses.replace(metadata, precision=build.precision, extra=extra)
