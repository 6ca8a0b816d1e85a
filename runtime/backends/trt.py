"""TensorRT backend: a plain ``.plan``/``.engine`` with its ``<plan>.json`` manifest, run on one CUDA stream.

I/O goes by tensor name (``set_tensor_address`` once, then ``execute_async_v3`` per frame); every buffer is
allocated once at load (pinned host + device). FP16 engine I/O is accepted and cast on copy. Works with
TensorRT 10 and 11 (neither has the removed bindings API).

Batches: a static batch-N engine takes 1..N template/search pairs per call (padded to N). A dynamic engine
(metadata batch 0) has one optimization profile; its buffers hold the profile's max rows, each call sets the
input shapes (``set_input_shape``) to the pairs given (raised to the profile's min by padding) and copies only
those rows; more pairs than the profile's max are refused with one line naming the profile.
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
from grm.runtime.backends.trt_build import BatchProfile
from grm.runtime.errors import ArtifactMismatchError, BackendUnavailableError, ConfigError, InputError

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


def engine_profile(engine: Any, specs: list[TensorSpec], source: str) -> BatchProfile:
    """The batch range of a dynamic engine's optimization profile 0, read from every input (they must agree).

    Raises:
        ArtifactMismatchError: inputs whose profiles disagree on the batch, or no usable profile.
    """
    bounds = set()
    for spec in (s for s in specs if s.is_input):
        shapes = engine.get_tensor_profile_shape(spec.name, 0)  # [min, opt, max] shapes
        bounds.add(tuple(int(tuple(shape)[0]) for shape in shapes))
    if len(bounds) != 1:
        raise ArtifactMismatchError(
            f"{source}: the inputs' optimization profiles disagree on the batch ({sorted(bounds)}); rebuild the engine"
        )
    try:
        return BatchProfile(*bounds.pop())
    except ConfigError as e:
        raise ArtifactMismatchError(f"{source} has no usable batch profile ({e}); rebuild the engine") from e


def allocate(specs: list[TensorSpec], cuda: CudaApi, context: Any, rows: int | None = None) -> dict[str, IoBuffer]:
    """Allocate a pinned host and a device buffer per tensor and bind the device address once; ``rows`` sizes
    the leading dimension of a dynamic-batch engine's tensors (its profile's max)."""
    buffers = {}
    for spec in specs:
        shape = spec.static_shape if rows is None else spec.batch_shape(rows)
        host = cuda.host_buffer(shape, spec.dtype)
        device = cuda.device_buffer(host.nbytes)
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
        self.profile = engine_profile(engine, specs, source) if self.metadata.dynamic_batch else None
        self._buffers = allocate(specs, cuda, self._context, self.profile.max if self.profile else None)
        self._shaped_rows: int | None = None  # rows the dynamic engine's input shapes are set to
        self._inputs = [b for b in self._buffers.values() if b.spec.is_input]
        self._outputs = [b for b in self._buffers.values() if not b.spec.is_input]

    def run(self, inputs: Mapping[str, NDArray[np.float32]]) -> dict[str, NDArray[np.float32]]:
        count = sample_count(inputs, self.metadata, self._source)  # 1..N pairs; fewer than N are padded
        rows = self._rows(count)
        reshape = self.profile is not None and rows != self._shaped_rows  # shapes stay set between calls
        if reshape:
            self._shaped_rows = None  # until every input has its new shape (a bad feed may stop the loop)
        for buf in self._inputs:
            host = buf.host[:rows]
            fill_rows(host, inputs[buf.spec.name], count, buf.spec.name)
            if reshape and not self._context.set_input_shape(buf.spec.name, host.shape):
                raise ArtifactMismatchError(f"TensorRT refused shape {list(host.shape)} for input '{buf.spec.name}'")
            self._cuda.to_device(buf.device, host)
        self._shaped_rows = rows
        if not self._context.execute_async_v3(self._cuda.stream_handle):
            raise BackendUnavailableError("TensorRT execute_async_v3 failed; see the TensorRT log above")
        for buf in self._outputs:
            self._cuda.to_host(buf.host[:rows], buf.device)
        self._cuda.synchronize()
        return as_float32_outputs({b.spec.name: b.host for b in self._outputs}, count)

    def _rows(self, count: int) -> int:
        """Rows the engine computes for ``count`` pairs: a static engine its batch; a dynamic one ``count``,
        raised to its profile's min.

        Raises:
            InputError: more pairs than the dynamic engine's profile allows.
        """
        if self.profile is None:
            return self._inputs[0].host.shape[0]
        if count > self.profile.max:
            raise InputError(
                f"{count} template/search pairs given to {self._source}, outside its TensorRT optimization profile "
                f"(batch {self.profile.describe()}); give at most {self.profile.max} per call, or rebuild the "
                "engine with a larger --batch-max"
            )
        return max(count, self.profile.min)

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
    device: int = 0,
) -> TensorRTBackend:
    """Open a TensorRT plan after checking its manifest against the plan, the config, TensorRT and the GPU.

    Args:
        path: the ``.plan``/``.engine`` file; ``<path>.json`` must sit next to it.
        config: the config the user expects (``--config``), checked against the manifest.
        cuda_api: ``cuda-python`` (default) or ``pycuda``; else $GRM_CUDA_API.
        device: the CUDA device the engine, its buffers and its stream live on.
        trt, cuda: already-imported modules (tests inject small fakes here).
    """
    source = str(path)
    manifest = read_manifest(path)
    check_plan_hash(path, manifest)
    check_config(manifest.metadata, config, source, rebuild_command(path, manifest.metadata))
    trt = trt or import_tensorrt()
    cuda = cuda or load_cuda_api(cuda_api or os.environ.get("GRM_CUDA_API", "cuda-python"), device)
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
