"""Build a serialized TensorRT engine (plain ``.plan``) from an exported ONNX file, plus its ``<plan>.json``.

Precision follows DEPLOY-NOTES section 1:

* TensorRT 11 builds strongly typed networks only: the precision comes from the ONNX types. An FP16 engine
  needs an FP16 ONNX (``grm-export --fp16``); asking for the FP16 builder flag on an FP32 ONNX is refused.
* TensorRT 10: an FP16 ONNX is built strongly typed (its FP32 islands are honoured); an FP32 ONNX with
  ``fp16=True`` uses the FP16 builder flag (weak typing, TensorRT picks per-layer precision).

FP32 engines are built with TF32 off, so they compute what the parity report measured. The sidecar holds
the ONNX's ``grm`` metadata plus TensorRT version, GPU name, compute capability and the plan's SHA-256
(:mod:`grm.runtime.backends.manifest`), which the runtime checks before it loads the plan.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grm.export.metadata import read_metadata
from grm.runtime.atomic import atomic_write_bytes, sha256_bytes
from grm.runtime.backends.manifest import EngineManifest, manifest_path, write_manifest
from grm.runtime.errors import ArtifactMismatchError, BackendUnavailableError, ConfigError
from grm.runtime.params import ModelMetadata

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 4 << 30
TRT_INSTALL_HINT = (
    "install TensorRT 10 or 11 on a machine with an NVIDIA GPU (pip install tensorrt --extra-index-url "
    "https://pypi.nvidia.com, or tensorrt-cu12 on CUDA 12 drivers), or export ONNX only by leaving out --engine"
)
GpuProbe = Callable[[], tuple[str, tuple[int, int]]]


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
        ConfigError: FP16 requested on an FP32 ONNX under TensorRT 11 (strong typing only).
    """
    major = trt_major(trt)
    if major < 10:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} is too old; {TRT_INSTALL_HINT}")
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


def gpu_info() -> tuple[str, tuple[int, int]]:
    """Name and compute capability of CUDA device 0 (cuda-python, else torch.cuda).

    Raises:
        BackendUnavailableError: no CUDA binding sees a GPU.
    """
    try:
        cudart = importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        cudart = None
    if cudart is not None:
        err, props = cudart.cudaGetDeviceProperties(0)
        if err == cudart.cudaError_t.cudaSuccess:
            name = props.name
            name = bytes(name).split(b"\0", 1)[0].decode() if isinstance(name, bytes | bytearray) else str(name)
            return name.strip(), (int(props.major), int(props.minor))
    torch = importlib.import_module("torch")
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0), tuple(torch.cuda.get_device_capability(0))
    raise BackendUnavailableError(
        f"building an engine needs an NVIDIA GPU with a working driver; none found; {TRT_INSTALL_HINT}"
    )


def build_engine(
    onnx_path: str | Path,
    plan_path: str | Path,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache: str | Path | None = None,
    fp16: bool = False,
    *,
    trt: Any = None,
    gpu: GpuProbe = gpu_info,
) -> EngineBuild:
    """Parse ``onnx_path`` with TensorRT, build a serialized engine and write ``plan_path`` + ``<plan>.json``.

    Args:
        onnx_path: a model written by grm-export (its ``grm`` metadata goes into the manifest).
        plan_path: output plan, written atomically.
        workspace_bytes: builder workspace memory-pool limit in bytes.
        timing_cache: file to load the timing cache from (if present) and save it to afterwards.
        fp16: FP16 from an FP32 ONNX (TensorRT 10 builder flag only).
        trt, gpu: injectable TensorRT module and GPU probe (tests).
    """
    trt = trt or import_tensorrt()
    metadata = read_metadata(onnx_path)
    build = plan_build(trt, metadata.precision, fp16, metadata.config)
    gpu_name, capability = gpu()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = _create_builder(trt, logger)
    network = builder.create_network(_network_flags(trt, build))
    parser = trt.OnnxParser(network, logger)
    _parse(parser, Path(onnx_path))
    config = _builder_config(trt, builder, build, workspace_bytes)
    cache_path = Path(timing_cache) if timing_cache else None
    _load_timing_cache(config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ArtifactMismatchError(
            f"TensorRT could not build an engine from {onnx_path}; see the TensorRT messages above"
        )
    data = bytes(serialized)
    plan = Path(plan_path)
    atomic_write_bytes(plan, data)
    if cache_path is not None:
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    manifest = EngineManifest(
        metadata=_engine_metadata(metadata, build),
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu_name,
        compute_capability=(int(capability[0]), int(capability[1])),
        plan_sha256=sha256_bytes(data),
    )
    write_manifest(plan, manifest)
    log.info("built %s (%s, TensorRT %s, %s)", plan, build.precision, trt.__version__, gpu_name)
    return EngineBuild(plan, manifest_path(plan), str(trt.__version__), build)


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
    if workspace_bytes <= 0:
        raise ConfigError(f"workspace {workspace_bytes} bytes must be positive")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if build.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if build.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    return config


def _load_timing_cache(config: Any, path: Path | None) -> None:
    if path is None:
        return
    previous = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(previous)
    config.set_timing_cache(cache, ignore_mismatch=False)
    log.info("timing cache %s: %d bytes loaded", path, len(previous))


def _engine_metadata(metadata: ModelMetadata, build: BuildPlan) -> ModelMetadata:
    """The ONNX metadata, with the engine's precision and how it was obtained."""
    extra = {
        **dict(metadata.extra),
        "engine_precision_source": "fp16 builder flag" if build.fp16_flag else "onnx types",
    }
    return dataclasses.replace(metadata, precision=build.precision, extra=extra)
