"""Small stand-ins for the ``tensorrt`` and ``cuda.bindings.runtime`` modules, for GPU-free tests.

They follow the real bindings where the code under test depends on it (TensorRT 10.13 / 11.x Python
bindings, cuda-bindings 12.6-13.x):

* ``DataType`` has the real members and numbers (UINT8 = 5, BF16 = 7, INT64 = 8 ...) and ``nptype`` maps
  only the types numpy has (BF16, FP8, INT4, FP4 raise TypeError, as ``tensorrt.nptype`` does).
* Streams are asynchronous: ``cudaMemcpyAsync`` and ``execute_async_v3`` only queue work, which runs at
  ``cudaStreamSynchronize``; a pinned host buffer is read when the copy runs, not when it is queued.
* The builder (``make_trt(...).Builder``) returns what the real one returns: ``build_serialized_network``
  gives None for a network TensorRT refuses (a precision flag on a strongly typed network; a Q/DQ network
  built weakly typed without the INT8 flag), ``create_timing_cache`` gives None for unreadable bytes,
  ``set_timing_cache`` returns False for a cache from another TensorRT version or GPU (and then no cache is
  attached), ``get_timing_cache`` returns None when none is attached. TensorRT 11 has no FP16/INT8 builder
  flags and is always strongly typed.
* Dynamic shapes follow the real optimization-profile API: ``builder.create_optimization_profile()``,
  ``profile.set_shape(name, min, opt, max)`` (refuses min > opt > max element-wise, as the real one raises),
  ``config.add_optimization_profile(profile)`` (returns the index, or -1 for a profile that misses a dynamic
  input), and a build with dynamic inputs but no profile gives None. An engine with dynamic tensors (-1 dims)
  answers ``get_tensor_profile_shape(name, 0)`` with [min, opt, max]; its context needs ``set_input_shape``
  within the profile before ``execute_async_v3`` (which returns False otherwise), and reports the resolved
  shapes through ``get_tensor_shape``.

"Device" memory is ordinary ctypes memory, so the TensorRT backend's real code path (pinned host buffers,
``cudaMemcpyAsync``, ``set_tensor_address``, ``execute_async_v3``) runs end to end: the fake execution
context reads its inputs from the bound device addresses, computes the brightness-tracker maps of
``runtime_fakes`` in numpy and writes the outputs to the bound output addresses.
"""

from __future__ import annotations

import ctypes
import enum
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from .runtime_fakes import DEPTH, SIZE_NORM

PLAN_BYTES = b"fake-tensorrt-plan"


class DataType(enum.Enum):
    """``tensorrt.DataType`` with the real member values."""

    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9
    FP4 = 10


_NP = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.INT64: np.int64,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
}


def nptype(dtype: DataType) -> type:
    """``tensorrt.nptype``: types without a numpy equivalent (BF16, FP8, INT4, FP4) raise TypeError."""
    if dtype not in _NP:
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
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
    """The fake ONNX model's maps in numpy, per row of the batch: sigmoid(4 * avgpool16(mean over channels of
    search)); decisions compare each row's score with that row's threshold."""
    search = inputs["search"].astype(np.float32)
    n = search.shape[0]
    grey = search.mean(axis=1, keepdims=True)
    pooled = grey.reshape(n, 1, feat, 16, feat, 16).mean(axis=(3, 5))
    score = 1.0 / (1.0 + np.exp(-4.0 * pooled))
    out = {
        "score_map": score.astype(np.float32),
        "size_map": np.full((n, 2, feat, feat), SIZE_NORM, np.float32),
        "offset_map": np.full((n, 2, feat, feat), 0.5, np.float32),
    }
    if decisions:
        threshold = inputs["threshold"].astype(np.float32).reshape(n, 1, 1, 1)
        joined = (score > threshold).reshape(n, 1, feat * feat)
        out["decisions"] = np.repeat(joined, DEPTH - 1, axis=1).astype(np.int32)
    return out


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: DataType
    mode: TensorIOMode


def tiny_tensors(io_dtype: DataType = DataType.FLOAT, decisions: bool = False, batch: int = 1) -> list[Tensor]:
    """The I/O of a tiny-config grm engine (template 64, search 128, 8x8 maps) of ``batch`` rows (-1: dynamic)."""
    inp, out, b = TensorIOMode.INPUT, TensorIOMode.OUTPUT, batch
    tensors = [
        Tensor("template", (b, 3, 64, 64), io_dtype, inp),
        Tensor("search", (b, 3, 128, 128), io_dtype, inp),
        Tensor("threshold", (b,), io_dtype, inp),
        Tensor("score_map", (b, 1, 8, 8), io_dtype, out),
        Tensor("size_map", (b, 2, 8, 8), io_dtype, out),
        Tensor("offset_map", (b, 2, 8, 8), io_dtype, out),
    ]
    if decisions:
        tensors.append(Tensor("decisions", (b, DEPTH - 1, 64), DataType.INT32, out))
    return tensors


def _view(ptr: int, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    count = int(np.prod(shape))
    raw = (ctypes.c_byte * (count * np.dtype(dtype).itemsize)).from_address(ptr)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)


class Context:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.input_shapes: dict[str, tuple[int, ...]] = {}
        self.shape_calls: list[tuple[str, tuple[int, ...]]] = []
        self.calls = 0
        self.fail = False

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        """Accept a shape inside the profile for a dynamic input (False otherwise, as TensorRT logs an error)."""
        shape = tuple(int(d) for d in shape)
        self.shape_calls.append((name, shape))
        tensor = self.engine._get(name)
        if tensor.mode != TensorIOMode.INPUT or len(shape) != len(tensor.shape):
            return False
        if any(d != s for d, s in zip(shape, tensor.shape, strict=True) if d >= 0 and s >= 0):
            return False
        low, _, high = self.engine.get_tensor_profile_shape(name, 0) if -1 in tensor.shape else (shape, shape, shape)
        if not all(lo <= d <= hi for lo, d, hi in zip(low, shape, high, strict=True)):
            return False
        self.input_shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        """The tensor's shape with the dynamic batch resolved from the input shapes set (-1 while unset)."""
        shape = self.engine._get(name).shape
        if -1 not in shape:
            return shape
        batch = {s[0] for s in self.input_shapes.values()}
        return (batch.pop(), *shape[1:]) if len(batch) == 1 else shape

    def execute_async_v3(self, stream_handle: int) -> bool:
        """Queue the computation on the stream with this handle (or run it now for an unknown handle); False
        while a dynamic input has no shape set."""
        self.calls += 1
        dynamic = [t.name for t in self.engine.tensors if t.mode == TensorIOMode.INPUT and -1 in t.shape]
        if self.fail or any(n not in self.input_shapes for n in dynamic):
            return False
        stream = FakeStream.by_handle.get(stream_handle)
        shapes = {t.name: self.get_tensor_shape(t.name) for t in self.engine.tensors}
        if stream is None:
            self._compute(shapes)
        else:
            stream.pending.append(lambda: self._compute(shapes))
        return True

    def _compute(self, shapes: dict[str, tuple[int, ...]]) -> None:
        tensors = {t.name: t for t in self.engine.tensors}
        inputs = {
            n: _view(self.addresses[n], shapes[n], nptype(t.dtype)).copy()
            for n, t in tensors.items()
            if t.mode == TensorIOMode.INPUT
        }
        for name, value in self.engine.compute(inputs).items():
            t = tensors[name]
            _view(self.addresses[name], shapes[name], nptype(t.dtype))[...] = value.astype(nptype(t.dtype))


class Engine:
    """A deserialised engine; tensors with -1 dims are dynamic and take their batch from ``profile``
    (min, opt, max), the engine's optimization profile 0."""

    def __init__(
        self,
        tensors: list[Tensor],
        compute: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
        profile: tuple[int, int, int] | None = None,
    ) -> None:
        self.tensors = tensors
        self.compute = compute
        self.profile = profile
        self.contexts: list[Context] = []

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        """[min, opt, max] shapes of a dynamic input in profile ``profile_index`` (only profile 0 exists)."""
        tensor = self._get(name)
        if tensor.mode != TensorIOMode.INPUT or self.profile is None or profile_index != 0:
            raise RuntimeError(f"no optimization profile {profile_index} for input {name}")
        return [(b, *tensor.shape[1:]) for b in self.profile]

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


# ------------------------------------------------------------------------------------------------- builder


class HostMemory:
    """``tensorrt.IHostMemory``: a buffer (``bytes(m)`` gives its content)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __bytes__(self) -> bytes:
        return self._data


@dataclass
class BuildState:
    """What the fake TensorRT saw, for assertions, and the environment its timing caches belong to."""

    version: str
    gpu: str = "NVIDIA Fake GPU"
    parse_ok: bool = True
    plan_override: bytes | None = None
    fail_build: bool = False
    network_flags: list[int] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    cleared: list[str] = field(default_factory=list)
    pool: list[tuple[str, int]] = field(default_factory=list)
    cache_in: list[bytes] = field(default_factory=list)
    parsed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    profiles: list[dict[str, tuple[tuple[int, ...], ...]]] = field(default_factory=list)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def cache_bytes(self, entries: int = 0) -> bytes:
        """A serialized timing cache of this TensorRT version and GPU."""
        return f"TC|{self.version}|{self.gpu}|{entries}".encode()


class TimingCache:
    def __init__(self, version: str, gpu: str, entries: int) -> None:
        self.version, self.gpu, self.entries = version, gpu, entries

    def serialize(self) -> HostMemory:
        return HostMemory(f"TC|{self.version}|{self.gpu}|{self.entries}".encode())


@dataclass
class NetworkInput:
    """``tensorrt.ITensor`` of a network input: its name and shape (-1 for a dynamic dimension)."""

    name: str
    shape: tuple[int, ...]


class Network:
    """What the parser found in the ONNX file, and how the network was created."""

    def __init__(self, strongly_typed: bool) -> None:
        self.strongly_typed = strongly_typed
        self.has_qdq = False
        self.has_fp16 = False
        self.inputs: list[NetworkInput] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> NetworkInput:
        return self.inputs[index]


def _onnx_features(path: str) -> tuple[bool, bool, list[NetworkInput]]:
    """(has Q/DQ nodes, has FP16 tensors, graph inputs) of an ONNX file, as TensorRT's parser would see them."""
    model = onnx.load(path, load_external_data=False)
    qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    fp16 = any(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for v in values)
    fp16 |= any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    inputs = [
        NetworkInput(
            v.name, tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)
        )
        for v in model.graph.input
    ]
    return qdq, fp16, inputs


class OptimizationProfile:
    """``tensorrt.IOptimizationProfile``: min/opt/max shapes per input name."""

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, min: tuple[int, ...], opt: tuple[int, ...], max: tuple[int, ...]) -> None:
        dims = tuple(tuple(int(d) for d in shape) for shape in (min, opt, max))
        if len({len(d) for d in dims}) != 1 or not all(a <= b <= c for a, b, c in zip(*dims, strict=True)):
            raise ValueError(f"IOptimizationProfile::setDimensions: invalid min/opt/max for {name}: {dims}")
        self.shapes[name] = dims


def _builder_api(state: BuildState) -> dict[str, object]:
    """Builder, OnnxParser and the enums of one TensorRT version."""
    precision_flags = {"FP16", "INT8", "BF16", "FP8"} if state.major < 11 else set()
    builder_flag = types.SimpleNamespace(**{name: name for name in ({"TF32", "REFIT"} | precision_flags)})

    class Parser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network
            self.num_errors = 0

        def parse_from_file(self, path: str) -> bool:
            state.parsed.append(path)
            if not state.parse_ok:
                self.num_errors = 2
                return False
            self.network.has_qdq, self.network.has_fp16, self.network.inputs = _onnx_features(path)
            return True

        def get_error(self, i: int) -> str:
            return f"In node {i} (importFoo): UNSUPPORTED_NODE: op {i} not supported"

    class Config:
        def __init__(self) -> None:
            self.flags: set[str] = {"TF32"}  # on by default, as in TensorRT
            self.cache: TimingCache | None = None
            self.profiles: list[OptimizationProfile] = []

        def add_optimization_profile(self, profile: OptimizationProfile) -> int:
            """The profile's index; -1 (TensorRT logs an error) for a profile with no shapes set."""
            if not profile.shapes:
                state.errors.append("addOptimizationProfile: profile is not valid")
                return -1
            self.profiles.append(profile)
            state.profiles.append(dict(profile.shapes))
            return len(self.profiles) - 1

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            state.pool.append((pool, size))

        def set_flag(self, flag: str) -> None:
            self.flags.add(flag)

        def clear_flag(self, flag: str) -> None:
            self.flags.discard(flag)
            state.cleared.append(flag)

        def get_flag(self, flag: str) -> bool:
            return flag in self.flags

        def create_timing_cache(self, data: bytes) -> TimingCache | None:
            state.cache_in.append(bytes(data))
            if not data:
                return TimingCache(state.version, state.gpu, 0)
            parts = bytes(data).decode("latin-1").split("|")
            if len(parts) != 4 or parts[0] != "TC" or not parts[3].isdigit():
                state.errors.append("createTimingCache: invalid timing cache")
                return None
            return TimingCache(parts[1], parts[2], int(parts[3]))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            if not ignore_mismatch and (cache.version, cache.gpu) != (state.version, state.gpu):
                state.errors.append("setTimingCache: cache mismatch (another TensorRT version or device)")
                return False
            self.cache = cache
            return True

        def get_timing_cache(self) -> TimingCache | None:
            return self.cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int) -> Network:
            state.network_flags.append(flags)
            strongly = state.major >= 11 or bool(flags & (1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED))
            return Network(strongly)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> OptimizationProfile:
            return OptimizationProfile()

        def build_serialized_network(self, network: Network, config: Config) -> HostMemory | None:
            state.flags = set(config.flags)
            precision = config.flags & precision_flags
            if state.fail_build:
                return None
            if network.strongly_typed and precision:
                state.errors.append(f"precision flags {sorted(precision)} are not allowed on a strongly typed network")
                return None
            if not network.strongly_typed and network.has_qdq and "INT8" not in config.flags:
                state.errors.append("Q/DQ layers need the INT8 flag on a weakly typed network")
                return None
            dynamic = [i for i in network.inputs if -1 in i.shape]
            if dynamic and not config.profiles:
                state.errors.append(
                    "Network has dynamic or shape inputs, but no optimization profile has been defined."
                )
                return None
            for profile in config.profiles:
                for tensor in dynamic:
                    shapes = profile.shapes.get(tensor.name)
                    fits = shapes is not None and all(
                        len(s) == len(tensor.shape)
                        and all(d == t for d, t in zip(s, tensor.shape, strict=True) if t >= 0)
                        for s in shapes
                    )
                    if not fits:
                        state.errors.append(f"optimization profile does not cover input {tensor.name} {tensor.shape}")
                        return None
            if config.cache is not None:
                config.cache.entries += 1
            if state.plan_override is not None:
                return HostMemory(state.plan_override)
            typing = "strong" if network.strongly_typed else "weak"
            computes = "int8" if network.has_qdq else "fp16" if network.has_fp16 or "FP16" in precision else "fp32"
            return HostMemory(f"PLAN|{typing}|{computes}|tf32={'TF32' in config.flags}".encode())

    class NetworkDefinitionCreationFlag:  # STRONGLY_TYPED stays in 11 (deprecated, ignored)
        STRONGLY_TYPED = 1

    return dict(
        Builder=Builder,
        OnnxParser=Parser,
        BuilderFlag=builder_flag,
        NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
    )


def make_trt(engine: Engine | None = None, version: str = "10.13.0.35", **build: object) -> types.SimpleNamespace:
    """A ``tensorrt`` module: its Runtime deserialises PLAN_BYTES into ``engine`` (anything else -> None), its
    Builder follows the real build rules of ``version``; ``build`` sets :class:`BuildState` fields, and the
    module's ``state`` records what the builder was asked for."""

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            return engine if data == PLAN_BYTES else None

    state = BuildState(version=version, **build)  # type: ignore[arg-type]
    return types.SimpleNamespace(
        __version__=version,
        DataType=DataType,
        TensorIOMode=TensorIOMode,
        Logger=Logger,
        Runtime=Runtime,
        nptype=nptype,
        state=state,
        **_builder_api(state),
    )


# ---------------------------------------------------------------------------------------------------- CUDA


class FakeStream:
    """A CUDA stream: queued work runs, in order, at ``cudaStreamSynchronize``."""

    by_handle: weakref.WeakValueDictionary[int, FakeStream] = weakref.WeakValueDictionary()

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []
        FakeStream.by_handle[id(self)] = self

    def run_pending(self) -> None:
        while self.pending:
            self.pending.pop(0)()


class CudaError(enum.Enum):
    cudaSuccess = 0
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100


class FakeCudart:
    """``cuda.bindings.runtime`` subset: each call returns (err, *values); memory is ctypes memory."""

    cudaError_t = CudaError
    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamNonBlocking = 1

    def __init__(
        self,
        gpu_name: str = "NVIDIA Fake GPU",
        capability: tuple[int, int] = (8, 6),
        set_device_error: CudaError = CudaError.cudaSuccess,
    ) -> None:
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
        props = types.SimpleNamespace(
            name=self.gpu_name.encode() + b"\0" * 8, major=self.capability[0], minor=self.capability[1]
        )
        return CudaError.cudaSuccess, props

    def cudaStreamCreateWithFlags(self, flags: int):
        stream = FakeStream()
        self.streams.append(stream)
        return CudaError.cudaSuccess, stream

    def cudaStreamDestroy(self, stream: object):
        self.streams.remove(stream)
        return (CudaError.cudaSuccess,)

    def cudaMalloc(self, nbytes: int):
        return self._alloc(self.device, nbytes)

    def cudaMallocHost(self, nbytes: int):
        return self._alloc(self.pinned, nbytes)

    def _implicit_sync(self) -> None:
        """cudaFree/cudaFreeHost wait for the device's queued work before freeing."""
        for stream in self.streams:
            stream.run_pending()

    def cudaFree(self, ptr: int):
        self._implicit_sync()
        del self.device[ptr]
        return (CudaError.cudaSuccess,)

    def cudaFreeHost(self, ptr: int):
        self._implicit_sync()
        del self.pinned[ptr]
        return (CudaError.cudaSuccess,)

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: int, stream: FakeStream):
        """Queue the copy; the source is read when the stream runs it (pinned memory, truly asynchronous)."""
        direction = "h2d" if kind == 1 else "d2h"
        table = self.device if direction == "h2d" else self.pinned
        assert dst in table, f"{direction} copy to an address that is not a {direction[-1]} buffer"
        stream.pending.append(lambda: ctypes.memmove(dst, src, count))
        self.copies.append((direction, count))
        return (CudaError.cudaSuccess,)

    def cudaStreamSynchronize(self, stream: FakeStream):
        self.synchronized += 1
        stream.run_pending()
        return (CudaError.cudaSuccess,)

    def sizes(self) -> list[int]:
        return sorted(len(b) for b in self.device.values())
