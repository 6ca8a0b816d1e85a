"""ONNX Runtime backend: one latency-tuned session with I/O bound to pre-allocated host buffers.

Backends names: ``onnxruntime``/``ort-cpu`` (CPU), ``ort-cuda`` (CUDA EP), ``ort-tensorrt`` (TensorRT EP,
falling through to CUDA then CPU for unsupported nodes). A requested GPU provider that is missing or fails
to start is an error; only ``auto`` falls back to the CPU, with a WARNING.

ONNX Runtime copies a bound input to the device when it is *bound* (``IOBinding::BindInput``), not when the
session runs, so the inputs are bound again on every frame; on the CPU that costs nothing (no copy is made).
The TensorRT EP keeps its engines in a folder per model file (keyed by the file's SHA-256: ONNX Runtime's own
engine names depend on the model's file name and node names, not on its weights), and runs Q/DQ (INT8) models
with ``trt_int8_enable`` and no calibration table, as explicit quantization.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from grm.runtime.atomic import sha256_file
from grm.runtime.backends.io_check import (
    TensorSpec,
    as_float32_outputs,
    check_config,
    check_io,
    fill_rows,
    parse_metadata,
    sample_count,
)
from grm.runtime.backends.onnx_metadata import read_onnx_metadata
from grm.runtime.errors import ArtifactMismatchError, BackendUnavailableError
from grm.runtime.params import METADATA_KEY, ModelMetadata

log = logging.getLogger(__name__)

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
PROVIDERS: Mapping[str, tuple[str, ...]] = {
    "onnxruntime": (CPU,),
    "ort-cpu": (CPU,),
    "ort-cuda": (CUDA, CPU),
    "ort-tensorrt": (TENSORRT, CUDA, CPU),
}
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}
_GPU_HINT = (
    "install onnxruntime-gpu (pip install 'grm-tracker[gpu]', never together with onnxruntime) on an NVIDIA machine"
)


def import_onnxruntime() -> Any:
    """Import onnxruntime or explain how to install it."""
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailableError(
            "the ONNX Runtime backend needs onnxruntime: pip install 'grm-tracker[cpu]' (or [gpu] on NVIDIA machines)"
        ) from e
    return onnxruntime


def trt_cache_dir() -> Path:
    """Engine cache of the TensorRT EP: $GRM_TRT_CACHE, else $XDG_CACHE_HOME/grm-tracker/ort-trt."""
    if os.environ.get("GRM_TRT_CACHE"):
        return Path(os.environ["GRM_TRT_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "grm-tracker" / "ort-trt"


def tensorrt_options(model: str | Path, device: int = 0) -> dict[str, Any]:
    """TensorRT EP options for one model file on CUDA device ``device``: its own engine folder, and explicit INT8
    for Q/DQ models.

    The folder is ``trt_cache_dir()/<sha256 of the .onnx file>``; the file holds the ``grm`` metadata (checkpoint
    hash, precision, calibration), so a re-export under the same name gets a new folder instead of the old
    engine. A Q/DQ model (metadata precision ``int8``) needs ``trt_int8_enable``; no calibration table is named
    because TensorRT refuses one for a network with Q/DQ nodes.
    """
    cache = trt_cache_dir() / sha256_file(model)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BackendUnavailableError(
            f"cannot create the TensorRT engine cache {cache}: {e.strerror or e}; set GRM_TRT_CACHE to a writable folder"
        ) from e
    options: dict[str, Any] = {
        "device_id": device,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
    }
    if read_onnx_metadata(model).precision == "int8":
        options.update(trt_int8_enable=True, trt_int8_use_native_calibration_table=False)
    return options


def provider_options(name: str, model: str | Path, device: int = 0) -> dict[str, Any]:
    """Latency-oriented options per execution provider on CUDA device ``device`` (an index among the devices
    CUDA_VISIBLE_DEVICES leaves visible); precision is never changed behind the user's back."""
    if name == CUDA:
        return {"device_id": device, "cudnn_conv_algo_search": "EXHAUSTIVE"}
    if name == TENSORRT:
        return tensorrt_options(model, device)
    return {}


def resolve_providers(backend: str, available: Sequence[str], providers: Sequence[str] | None = None) -> list[str]:
    """Provider list for a backend name; a missing requested provider raises, ``auto`` prefers CUDA then CPU."""
    if providers:
        wanted = list(providers)
    elif backend == "auto":
        return [CUDA, CPU] if CUDA in available else [CPU]
    elif backend in PROVIDERS:
        wanted = list(PROVIDERS[backend])
    else:
        raise BackendUnavailableError(f"'{backend}' is not an ONNX Runtime backend; use one of {sorted(PROVIDERS)}")
    missing = [p for p in wanted if p not in available]
    if missing:
        raise BackendUnavailableError(
            f"ONNX Runtime provider {missing[0]} is not available (available: {', '.join(available)}); "
            + (_GPU_HINT if missing[0] != CPU else "reinstall onnxruntime")
            + ", or use --backend onnxruntime"
        )
    return wanted


def session_options(ort: Any, threads: int | None) -> Any:
    """Session options for single-stream latency: full graph optimisation, sequential execution."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = int(threads) if threads else 0
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


class OnnxRuntimeBackend:
    """Runs a grm ONNX export with ONNX Runtime.

    Inputs and outputs live in host buffers allocated at load (IO binding). :meth:`run` copies the inputs in,
    binds them again (the moment ONNX Runtime copies them to a GPU), runs, waits for the outputs and returns
    float32 copies of them. A static batch-N model takes 1..N template/search pairs per call (padded to N); a
    dynamic-batch model (metadata batch 0) takes any number through a plain ``session.run``.
    """

    def __init__(self, session: Any, metadata: ModelMetadata, source: str) -> None:
        ort = import_onnxruntime()
        self.metadata = metadata
        self.providers: list[str] = list(session.get_providers())
        self.name = f"onnxruntime[{self.providers[0]}]"
        specs = tensor_specs(session)
        check_io(specs, metadata, source)
        self._session = session
        self._source = source
        self._dynamic = specs if metadata.dynamic_batch else []  # no fixed buffers to bind for these
        self._binding = session.io_binding()
        self._inputs: dict[str, tuple[NDArray[Any], Any]] = {}  # name -> (host buffer, OrtValue over it)
        self._outputs: dict[str, NDArray[Any]] = {}
        self._values: list[Any] = []  # keeps the output OrtValues (and thus their bindings) alive
        for spec in [] if self._dynamic else specs:
            buf = np.zeros(spec.static_shape, dtype=spec.dtype)
            value = ort.OrtValue.ortvalue_from_numpy(buf)
            if spec.is_input:
                self._inputs[spec.name] = (buf, value)
            else:
                self._outputs[spec.name] = buf
                self._values.append(value)
                self._binding.bind_ortvalue_output(spec.name, value)

    def run(self, inputs: Mapping[str, NDArray[np.float32]]) -> dict[str, NDArray[np.float32]]:
        count = sample_count(inputs, self.metadata, self._source)
        if self._dynamic:
            return self._run_dynamic(inputs, count)
        for name, (buf, value) in self._inputs.items():
            fill_rows(buf, inputs[name], count, name)
            self._binding.bind_ortvalue_input(name, value)  # copies to the device now (no copy on the CPU)
        self._session.run_with_iobinding(self._binding)
        self._binding.synchronize_outputs()  # device -> bound host buffers complete before they are read
        return as_float32_outputs(self._outputs, count)

    def _run_dynamic(self, inputs: Mapping[str, NDArray[np.float32]], count: int) -> dict[str, NDArray[np.float32]]:
        """A dynamic-batch model: feeds of ``count`` rows in the model's dtypes, run without a binding."""
        feeds = {}
        for spec in (s for s in self._dynamic if s.is_input):
            feeds[spec.name] = np.empty(spec.batch_shape(count), dtype=spec.dtype)
            fill_rows(feeds[spec.name], inputs[spec.name], count, spec.name)
        names = [s.name for s in self._dynamic if not s.is_input]
        return as_float32_outputs(dict(zip(names, self._session.run(names, feeds), strict=True)))

    def close(self) -> None:
        self._binding = None
        self._values.clear()
        self._inputs.clear()
        self._session = None


def tensor_specs(session: Any) -> list[TensorSpec]:
    """Describe a session's inputs and outputs (dynamic dimensions become None)."""
    specs = []
    for is_input, args in ((True, session.get_inputs()), (False, session.get_outputs())):
        for arg in args:
            dtype = _ORT_DTYPES.get(arg.type)
            if dtype is None:
                raise ArtifactMismatchError(f"model tensor '{arg.name}' has unsupported type {arg.type}")
            shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
            specs.append(TensorSpec(name=arg.name, shape=shape, dtype=np.dtype(dtype), is_input=is_input))
    return specs


def open_onnx(
    path: str | Path,
    *,
    backend: str = "onnxruntime",
    config: str | None = None,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    device: int = 0,
) -> OnnxRuntimeBackend:
    """Open a grm ONNX export; checks metadata, config, I/O contract and that the requested provider runs.
    ``device`` is the CUDA device of the GPU providers (their ``device_id``)."""
    ort = import_onnxruntime()
    source = str(path)
    wanted = resolve_providers(backend, ort.get_available_providers(), providers)
    session = _create_session(ort, source, wanted, threads, auto=backend == "auto" and not providers, device=device)
    active = session.get_providers()[0]
    if active != wanted[0]:
        if backend != "auto" or providers:
            raise BackendUnavailableError(
                f"ONNX Runtime could not start {wanted[0]} (it fell back to {active}); check the GPU driver and "
                f"CUDA/cuDNN libraries, or use --backend onnxruntime"
            )
        log.warning("%s could not start; running on %s", wanted[0], active)
    metadata = parse_metadata(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), source)
    check_config(metadata, config, source, f"grm-export --config NAME --output {source}")
    return OnnxRuntimeBackend(session, metadata, source)


def _create_session(
    ort: Any, source: str, providers: list[str], threads: int | None, auto: bool, device: int = 0
) -> Any:
    with_options = [(p, provider_options(p, source, device)) for p in providers]
    try:
        return ort.InferenceSession(source, sess_options=session_options(ort, threads), providers=with_options)
    except ort_errors(ort) as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if providers[0] == CPU:
            raise ArtifactMismatchError(f"ONNX Runtime cannot load {source}: {first_line}") from e
        if not auto:
            raise BackendUnavailableError(f"ONNX Runtime cannot start {providers[0]}: {first_line}") from e
        log.warning("%s failed (%s); falling back to the CPU", providers[0], first_line)
        return _create_session(ort, source, [CPU], threads, auto)


def ort_errors(ort: Any) -> tuple[type[BaseException], ...]:
    """ONNX Runtime's own exception classes (they derive from Exception directly), plus RuntimeError."""
    state = getattr(getattr(ort, "capi", None), "onnxruntime_pybind11_state", None)
    names = (
        "Fail",
        "InvalidArgument",
        "NoSuchFile",
        "NoModel",
        "EngineError",
        "RuntimeException",
        "InvalidProtobuf",
        "InvalidGraph",
        "NotImplemented",
        "EPFail",
        "ModelRequiresCompilation",
    )
    found = tuple(getattr(state, n) for n in names if isinstance(getattr(state, n, None), type))
    return (*found, RuntimeError, ValueError)
