"""TensorRT backend: a plain ``.plan``/``.engine`` with its ``<plan>.json`` manifest, run on one CUDA stream.

I/O goes by tensor name (``set_tensor_address`` once, then ``execute_async_v3`` per frame); every buffer is
allocated once at load (pinned host + device). FP16 engine I/O is accepted and cast on copy. Works with
TensorRT 10 and 11 (neither has the removed bindings API).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from grm.runtime.backends.cuda_memory import CudaApi, load_cuda_api
from grm.runtime.backends.io_check import (
    TensorSpec,
    as_float32_outputs,
    check_config,
    check_io,
    fill_rows,
    sample_count,
)
from grm.runtime.backends.manifest import (
    EngineManifest,
    check_environment,
    check_plan_hash,
    read_manifest,
    rebuild_command,
)
from grm.runtime.errors import ArtifactMismatchError, BackendUnavailableError

log = logging.getLogger(__name__)
_TRT_HINT = (
    "the TensorRT backend needs the tensorrt package and an NVIDIA GPU: pip install tensorrt "
    "'cuda-python>=12.6.1' --extra-index-url https://pypi.nvidia.com, or run the .onnx model with "
    "--backend onnxruntime"
)


def import_tensorrt() -> Any:
    """Import tensorrt or explain how to install it."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as e:
        raise BackendUnavailableError(f"{_TRT_HINT} ({e})") from e


@dataclass
class IoBuffer:
    """One engine tensor: its spec, its pinned host array (engine dtype) and its device pointer."""

    spec: TensorSpec
    host: NDArray[Any]
    device: int


def engine_specs(engine: Any, trt: Any) -> list[TensorSpec]:
    """Names, shapes, numpy dtypes and directions of every engine I/O tensor (dynamic dims -> None)."""
    specs = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = tuple(int(d) if int(d) >= 0 else None for d in engine.get_tensor_shape(name))
        try:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        except TypeError as e:
            raise ArtifactMismatchError(f"engine tensor '{name}' has a type numpy cannot hold ({e})") from e
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        specs.append(TensorSpec(name=name, shape=shape, dtype=dtype, is_input=is_input))
    return specs


def allocate(specs: list[TensorSpec], cuda: CudaApi, context: Any) -> dict[str, IoBuffer]:
    """Allocate a pinned host and a device buffer per tensor and bind the device address once."""
    buffers = {}
    for spec in specs:
        host = cuda.host_buffer(spec.static_shape, spec.dtype)
        device = cuda.device_buffer(spec.nbytes)
        if not context.set_tensor_address(spec.name, device):
            raise ArtifactMismatchError(f"TensorRT refused the address of tensor '{spec.name}'")
        buffers[spec.name] = IoBuffer(spec=spec, host=host, device=device)
    return buffers


class TensorRTBackend:
    """Runs a grm TensorRT plan: copy in (cast to the engine's dtype), enqueue, copy out, synchronise."""

    def __init__(
        self, trt: Any, runtime: Any, engine: Any, cuda: CudaApi, manifest: EngineManifest, source: str
    ) -> None:
        self.metadata = manifest.metadata
        self.manifest = manifest
        self.name = f"tensorrt[{cuda.name}]"
        specs = engine_specs(engine, trt)
        check_io(specs, self.metadata, source)
        self._source = source
        self._runtime = runtime  # must outlive the engine
        self._engine = engine
        self._cuda = cuda
        self._context = engine.create_execution_context()
        if self._context is None:
            raise BackendUnavailableError(f"TensorRT could not create an execution context for {source} (GPU memory?)")
        self._buffers = allocate(specs, cuda, self._context)
        self._inputs = [b for b in self._buffers.values() if b.spec.is_input]
        self._outputs = [b for b in self._buffers.values() if not b.spec.is_input]

    def run(self, inputs: Mapping[str, NDArray[np.float32]]) -> dict[str, NDArray[np.float32]]:
        count = sample_count(inputs, self.metadata, self._source)  # 1..N pairs; fewer than N are padded
        for buf in self._inputs:
            fill_rows(buf.host, inputs[buf.spec.name], count, buf.spec.name)
            self._cuda.to_device(buf.device, buf.host)
        if not self._context.execute_async_v3(self._cuda.stream_handle):
            raise BackendUnavailableError("TensorRT execute_async_v3 failed; see the TensorRT log above")
        for buf in self._outputs:
            self._cuda.to_host(buf.host, buf.device)
        self._cuda.synchronize()
        return as_float32_outputs({b.spec.name: b.host for b in self._outputs}, count)

    def close(self) -> None:
        """Release in dependency order: context, engine, then the CUDA buffers and stream."""
        self._context = None
        self._engine = None
        self._runtime = None
        self._buffers, self._inputs, self._outputs = {}, [], []
        self._cuda.close()


def open_plan(
    path: str | Path,
    *,
    config: str | None = None,
    cuda_api: str | None = None,
    trt: Any = None,
    cuda: CudaApi | None = None,
) -> TensorRTBackend:
    """Open a TensorRT plan after checking its manifest against the plan, the config, TensorRT and the GPU.

    Args:
        path: the ``.plan``/``.engine`` file; ``<path>.json`` must sit next to it.
        config: the config the user expects (``--config``), checked against the manifest.
        cuda_api: ``cuda-python`` (default) or ``pycuda``; else $GRM_CUDA_API.
        trt, cuda: already-imported modules (tests inject small fakes here).
    """
    source = str(path)
    manifest = read_manifest(path)
    check_plan_hash(path, manifest)
    check_config(manifest.metadata, config, source, rebuild_command(path, manifest.metadata))
    trt = trt or import_tensorrt()
    cuda = cuda or load_cuda_api(cuda_api or os.environ.get("GRM_CUDA_API", "cuda-python"))
    try:
        return _load_engine(path, manifest, trt, cuda)
    except BaseException:  # a TensorRT RuntimeError or Ctrl-C must not leak the stream and pinned memory
        cuda.close()
        raise


def _load_engine(path: str | Path, manifest: EngineManifest, trt: Any, cuda: CudaApi) -> TensorRTBackend:
    gpu_name, capability = cuda.device_info()
    check_environment(path, manifest, str(trt.__version__), gpu_name, capability)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        raise ArtifactMismatchError(
            f"TensorRT could not deserialize {path}; rebuild with: {rebuild_command(path, manifest.metadata)}"
        )
    log.info("TensorRT %s plan %s on %s", trt.__version__, path, gpu_name)
    return TensorRTBackend(trt, runtime, engine, cuda, manifest, str(path))
