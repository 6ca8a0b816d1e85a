"""Small stand-ins for the ``tensorrt`` and ``cuda.bindings.runtime`` modules, for GPU-free tests.

"Device" memory is ordinary ctypes memory, so the TensorRT backend's real code path (pinned host buffers,
``cudaMemcpyAsync``, ``set_tensor_address``, ``execute_async_v3``) runs end to end: the fake execution
context reads its inputs from the bound device addresses, computes the brightness-tracker maps of
``runtime_fakes`` in numpy and writes the outputs to the bound output addresses.
"""

from __future__ import annotations

import ctypes
import enum
import types
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .runtime_fakes import DEPTH, SIZE_NORM

PLAN_BYTES = b"fake-tensorrt-plan"


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    INT64 = 5
    FP8 = 6


_NP = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.BOOL: np.bool_,
    DataType.INT64: np.int64,
}


def nptype(dtype: DataType) -> type:
    if dtype not in _NP:
        raise TypeError(f"could not resolve {dtype}")
    return _NP[dtype]


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class Logger:
    WARNING = 2

    def __init__(self, severity: int = 2) -> None:
        self.severity = severity


def brightness_outputs(inputs: dict[str, np.ndarray], feat: int = 8, decisions: bool = False) -> dict[str, np.ndarray]:
    """The fake ONNX model's maps in numpy: sigmoid(4 * avgpool16(mean over channels of search))."""
    search = inputs["search"].astype(np.float32)
    grey = search.mean(axis=1, keepdims=True)
    pooled = grey.reshape(1, 1, feat, 16, feat, 16).mean(axis=(3, 5))
    score = 1.0 / (1.0 + np.exp(-4.0 * pooled))
    out = {
        "score_map": score.astype(np.float32),
        "size_map": np.full((1, 2, feat, feat), SIZE_NORM, np.float32),
        "offset_map": np.full((1, 2, feat, feat), 0.5, np.float32),
    }
    if decisions:
        joined = (score > inputs["threshold"].astype(np.float32)).reshape(1, 1, feat * feat)
        out["decisions"] = np.repeat(joined, DEPTH - 1, axis=1).astype(np.int32)
    return out


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: DataType
    mode: TensorIOMode


def tiny_tensors(io_dtype: DataType = DataType.FLOAT, decisions: bool = False) -> list[Tensor]:
    """The I/O of a tiny-config grm engine (template 64, search 128, 8x8 maps)."""
    inp, out = TensorIOMode.INPUT, TensorIOMode.OUTPUT
    tensors = [
        Tensor("template", (1, 3, 64, 64), io_dtype, inp),
        Tensor("search", (1, 3, 128, 128), io_dtype, inp),
        Tensor("threshold", (1,), io_dtype, inp),
        Tensor("score_map", (1, 1, 8, 8), io_dtype, out),
        Tensor("size_map", (1, 2, 8, 8), io_dtype, out),
        Tensor("offset_map", (1, 2, 8, 8), io_dtype, out),
    ]
    if decisions:
        tensors.append(Tensor("decisions", (1, DEPTH - 1, 64), DataType.INT32, out))
    return tensors


def _view(ptr: int, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    count = int(np.prod(shape))
    raw = (ctypes.c_byte * (count * np.dtype(dtype).itemsize)).from_address(ptr)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)


class Context:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.calls = 0
        self.fail = False

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.calls += 1
        if self.fail:
            return False
        tensors = {t.name: t for t in self.engine.tensors}
        inputs = {n: _view(self.addresses[n], t.shape, nptype(t.dtype)).copy()
                  for n, t in tensors.items() if t.mode == TensorIOMode.INPUT}
        for name, value in self.engine.compute(inputs).items():
            t = tensors[name]
            _view(self.addresses[name], t.shape, nptype(t.dtype))[...] = value.astype(nptype(t.dtype))
        return True


class Engine:
    def __init__(self, tensors: list[Tensor], compute: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> None:
        self.tensors = tensors
        self.compute = compute
        self.contexts: list[Context] = []

    @property
    def num_io_tensors(self) -> int:
        return len(self.tensors)

    def _get(self, name: str) -> Tensor:
        return next(t for t in self.tensors if t.name == name)

    def get_tensor_name(self, index: int) -> str:
        return self.tensors[index].name

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._get(name).shape

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._get(name).dtype

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._get(name).mode

    def create_execution_context(self) -> Context:
        ctx = Context(self)
        self.contexts.append(ctx)
        return ctx


def make_trt(engine: Engine | None, version: str = "10.13.0.35") -> types.SimpleNamespace:
    """A ``tensorrt`` module whose Runtime deserialises PLAN_BYTES into ``engine`` (anything else -> None)."""

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            return engine if data == PLAN_BYTES else None

    return types.SimpleNamespace(
        __version__=version, DataType=DataType, TensorIOMode=TensorIOMode, Logger=Logger, Runtime=Runtime,
        nptype=nptype,
    )


class CudaError(enum.Enum):
    cudaSuccess = 0
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100


class FakeCudart:
    """``cuda.bindings.runtime`` subset: each call returns (err, *values); memory is ctypes memory."""

    cudaError_t = CudaError
    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamNonBlocking = 1

    def __init__(self, gpu_name: str = "NVIDIA Fake GPU", capability: tuple[int, int] = (8, 6),
                 set_device_error: CudaError = CudaError.cudaSuccess) -> None:
        self.gpu_name, self.capability = gpu_name, capability
        self.set_device_error = set_device_error
        self.device: dict[int, ctypes.Array] = {}
        self.pinned: dict[int, ctypes.Array] = {}
        self.copies: list[tuple[str, int]] = []
        self.streams: list[object] = []
        self.synchronized = 0

    def _alloc(self, table: dict[int, ctypes.Array], nbytes: int) -> tuple[CudaError, int]:
        buf = ctypes.create_string_buffer(nbytes)
        table[ctypes.addressof(buf)] = buf
        return CudaError.cudaSuccess, ctypes.addressof(buf)

    def cudaSetDevice(self, device: int):
        return (self.set_device_error,)

    def cudaGetDeviceProperties(self, device: int):
        props = types.SimpleNamespace(name=self.gpu_name.encode() + b"\0" * 8, major=self.capability[0],
                                      minor=self.capability[1])
        return CudaError.cudaSuccess, props

    def cudaStreamCreateWithFlags(self, flags: int):
        stream = object()
        self.streams.append(stream)
        return CudaError.cudaSuccess, stream

    def cudaStreamDestroy(self, stream: object):
        self.streams.remove(stream)
        return (CudaError.cudaSuccess,)

    def cudaMalloc(self, nbytes: int):
        return self._alloc(self.device, nbytes)

    def cudaMallocHost(self, nbytes: int):
        return self._alloc(self.pinned, nbytes)

    def cudaFree(self, ptr: int):
        del self.device[ptr]
        return (CudaError.cudaSuccess,)

    def cudaFreeHost(self, ptr: int):
        del self.pinned[ptr]
        return (CudaError.cudaSuccess,)

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: int, stream: object):
        direction = "h2d" if kind == 1 else "d2h"
        table = self.device if direction == "h2d" else self.pinned
        assert dst in table, f"{direction} copy to an address that is not a {direction[-1]} buffer"
        ctypes.memmove(dst, src, count)
        self.copies.append((direction, count))
        return (CudaError.cudaSuccess,)

    def cudaStreamSynchronize(self, stream: object):
        self.synchronized += 1
        return (CudaError.cudaSuccess,)

    def sizes(self) -> list[int]:
        return sorted(len(b) for b in self.device.values())
