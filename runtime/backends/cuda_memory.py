"""Pinned host buffers, device buffers and one stream, through cuda-python (default) or pycuda.

Both implementations offer the same small interface to the TensorRT backend. Imports are deferred and a
missing package or GPU becomes a one-line :class:`BackendUnavailableError`. With pycuda the device's
*primary* context is used (``pycuda.autoprimaryctx``), the one TensorRT and the CUDA runtime API share.
"""

from __future__ import annotations

import ctypes
import importlib
import os
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from grm.runtime.errors import BackendUnavailableError

CUDA_APIS = ("cuda-python", "pycuda")
# cuda.bindings (the module path used here) exists from cuda-python 12.6.1 on; 13.x removed the old paths.
_HINT = "pip install 'cuda-python>=12.6.1' on a machine with an NVIDIA GPU and driver"


class CudaApi(Protocol):
    """What the TensorRT backend needs from CUDA."""

    name: str
    stream_handle: int

    def device_info(self) -> tuple[str, tuple[int, int]]: ...

    def host_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> NDArray[Any]: ...

    def device_buffer(self, nbytes: int) -> int: ...

    def to_device(self, device_ptr: int, host: NDArray[Any]) -> None: ...

    def to_host(self, host: NDArray[Any], device_ptr: int) -> None: ...

    def synchronize(self) -> None: ...

    def close(self) -> None: ...


class CudaPythonApi:
    """cuda-python 12.x/13.x runtime API (``cuda.bindings.runtime``): every call returns ``(err, *values)``."""

    name = "cuda-python"

    def __init__(self, cudart: Any, native_handle: Any, device: int = 0) -> None:
        self._rt = cudart
        self._device = device
        self._host: list[int] = []
        self._dev: list[int] = []
        self._check(cudart.cudaSetDevice(device), "cudaSetDevice")
        self._stream = self._check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreate")
        self.stream_handle = int(native_handle(self._stream))

    def _check(self, result: Any, call: str) -> Any:
        err = result[0] if isinstance(result, tuple) else result
        if err != self._rt.cudaError_t.cudaSuccess:
            name = getattr(err, "name", str(err))
            raise BackendUnavailableError(f"CUDA call {call} failed with {name}; is an NVIDIA GPU and driver present?")
        if isinstance(result, tuple) and len(result) > 1:
            return result[1] if len(result) == 2 else result[1:]
        return None

    def device_info(self) -> tuple[str, tuple[int, int]]:
        props = self._check(self._rt.cudaGetDeviceProperties(self._device), "cudaGetDeviceProperties")
        return _device_name(props.name), (int(props.major), int(props.minor))

    def host_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> NDArray[Any]:
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize, 1)
        ptr = int(self._check(self._rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        self._host.append(ptr)
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(memoryview(raw), dtype=dtype, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)

    def device_buffer(self, nbytes: int) -> int:
        ptr = int(self._check(self._rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
        self._dev.append(ptr)
        return ptr

    def to_device(self, device_ptr: int, host: NDArray[Any]) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpyAsync(device_ptr, host.ctypes.data, host.nbytes, kind, self._stream), "H2D")

    def to_host(self, host: NDArray[Any], device_ptr: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._rt.cudaMemcpyAsync(host.ctypes.data, device_ptr, host.nbytes, kind, self._stream), "D2H")

    def synchronize(self) -> None:
        self._check(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        """Wait for the stream's queued work, then free every buffer and the stream (errors are ignored)."""
        if self._stream is not None:
            self._rt.cudaStreamSynchronize(self._stream)
        for ptr in self._dev:
            self._rt.cudaFree(ptr)
        for ptr in self._host:
            self._rt.cudaFreeHost(ptr)
        self._dev, self._host = [], []
        if self._stream is not None:
            self._rt.cudaStreamDestroy(self._stream)
            self._stream = None


class PycudaApi:
    """pycuda on the device's primary context (``import pycuda.autoprimaryctx`` has retained and pushed it)."""

    name = "pycuda"

    def __init__(self, driver: Any) -> None:
        self._drv = driver
        self._stream = driver.Stream()
        self.stream_handle = int(self._stream.handle)
        self._allocations: dict[int, Any] = {}

    def device_info(self) -> tuple[str, tuple[int, int]]:
        device = self._drv.Context.get_device()
        major, minor = device.compute_capability()
        return str(device.name()).strip(), (int(major), int(minor))

    def host_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> NDArray[Any]:
        return self._drv.pagelocked_empty(shape, dtype)

    def device_buffer(self, nbytes: int) -> int:
        allocation = self._drv.mem_alloc(max(nbytes, 1))
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def to_device(self, device_ptr: int, host: NDArray[Any]) -> None:
        self._drv.memcpy_htod_async(self._allocations[device_ptr], host, self._stream)

    def to_host(self, host: NDArray[Any], device_ptr: int) -> None:
        self._drv.memcpy_dtoh_async(host, self._allocations[device_ptr], self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def close(self) -> None:
        try:
            self._stream.synchronize()
        except self._drv.Error:
            pass  # a failed context still frees its allocations below
        for allocation in self._allocations.values():
            allocation.free()
        self._allocations.clear()


def _device_name(name: Any) -> str:
    """``cudaDeviceProp.name`` is a NUL-padded char array (bytes) in cuda-python, a str elsewhere."""
    if isinstance(name, bytes | bytearray):
        name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(name).strip()


def gpu_info(device: int = 0) -> tuple[str, tuple[int, int]]:
    """Name and compute capability of a CUDA device, through cuda-python, else pycuda; no stream is created.

    Raises:
        BackendUnavailableError: neither binding is installed, or neither sees a GPU.
    """
    try:
        cudart = importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        cudart = None
    if cudart is not None:
        err, props = cudart.cudaGetDeviceProperties(device)
        if err == cudart.cudaError_t.cudaSuccess:
            return _device_name(props.name), (int(props.major), int(props.minor))
        raise BackendUnavailableError(
            f"no usable NVIDIA GPU: cudaGetDeviceProperties failed with {getattr(err, 'name', err)}; "
            "check the driver (nvidia-smi)"
        )
    try:
        driver = importlib.import_module("pycuda.driver")
    except ImportError as e:
        raise BackendUnavailableError(f"finding the GPU needs cuda-python: {_HINT}") from e
    try:
        driver.init()
        gpu = driver.Device(device)
        major, minor = gpu.compute_capability()
    except driver.Error as e:
        raise BackendUnavailableError(f"no usable NVIDIA GPU: pycuda says {e}; check the driver (nvidia-smi)") from e
    return _device_name(gpu.name()), (int(major), int(minor))


def load_cuda_api(kind: str = "cuda-python", device: int = 0) -> CudaApi:
    """Import the chosen CUDA binding and set up CUDA device ``device`` and one stream."""
    if kind == "cuda-python":
        try:
            cudart = importlib.import_module("cuda.bindings.runtime")
        except ImportError as e:
            raise BackendUnavailableError(f"the TensorRT backend needs cuda-python (cuda.bindings): {_HINT}") from e
        return CudaPythonApi(cudart, _native_handle_fn(), device)
    if kind == "pycuda":
        return _load_pycuda(device)
    raise BackendUnavailableError(f"unknown CUDA binding '{kind}'; use one of {', '.join(CUDA_APIS)}")


def _native_handle_fn() -> Any:
    """``cuda.bindings.utils.get_cuda_native_handle`` (13.x; ``int(obj)`` is deprecated there), else ``int``."""
    try:
        return importlib.import_module("cuda.bindings.utils").get_cuda_native_handle
    except (ImportError, AttributeError):
        return int


def _load_pycuda(device: int = 0) -> CudaApi:
    """pycuda's primary context on ``device``: ``pycuda.autoprimaryctx`` opens the device named by CUDA_DEVICE
    (once per process, so one process serves one device)."""
    os.environ["CUDA_DEVICE"] = str(device)
    try:
        driver = importlib.import_module("pycuda.driver")
    except ImportError as e:
        raise BackendUnavailableError(
            f"GRM_CUDA_API=pycuda needs pycuda: pip install 'grm-tracker[pycuda]' ({e})"
        ) from e
    try:
        importlib.import_module("pycuda.autoprimaryctx")
    except (ImportError, RuntimeError, driver.Error) as e:
        raise BackendUnavailableError(f"pycuda cannot open the GPU's primary context ({e}); {_HINT}") from e
    return PycudaApi(driver)
