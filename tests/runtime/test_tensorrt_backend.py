"""TensorRT backend: manifest checks, buffer sizing, FP16 I/O and error paths against fake trt/cudart modules.

The real-GPU tests at the end build an engine from the fake ONNX model and compare it with ONNX Runtime;
they skip on machines without tensorrt and an NVIDIA GPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import sys
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from grm.runtime.backends import open_model
from grm.runtime.backends.cuda_memory import CudaPythonApi, load_cuda_api
from grm.runtime.backends.manifest import (
    EngineManifest,
    manifest_path,
    parse_compute_capability,
    read_manifest,
    write_manifest,
)
from grm.runtime.backends.trt import engine_specs, open_plan
from grm.runtime.errors import ArtifactMismatchError, BackendUnavailableError
from grm.runtime.tracker import Tracker

from .runtime_fakes import square_frames, tiny_metadata
from .trt_fakes import PLAN_BYTES, CudaError, DataType, Engine, FakeCudart, brightness_outputs, make_trt, tiny_tensors

TRT_VERSION = "10.13.0.35"
GPU = "NVIDIA Fake GPU"


def _manifest(plan_bytes: bytes = PLAN_BYTES, **changes) -> EngineManifest:
    values = dict(
        metadata=tiny_metadata(),
        tensorrt_version=TRT_VERSION,
        gpu_name=GPU,
        compute_capability=(8, 6),
        plan_sha256=hashlib.sha256(plan_bytes).hexdigest(),
    )
    values.update(changes)
    return EngineManifest(**values)


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.plan"
    path.write_bytes(PLAN_BYTES)
    write_manifest(path, _manifest())
    return path


def _open(
    plan: Path, *, io_dtype=DataType.FLOAT, decisions=False, cudart=None, version=TRT_VERSION, tensors=None, config=None
):
    cudart = cudart or FakeCudart()
    engine = Engine(tensors or tiny_tensors(io_dtype, decisions), partial(brightness_outputs, decisions=decisions))
    cuda = CudaPythonApi(cudart, native_handle=id)
    backend = open_plan(plan, config=config, trt=make_trt(engine, version), cuda=cuda)
    return backend, cudart, engine


def test_manifest_round_trip(plan: Path) -> None:
    assert manifest_path(plan).name == "tiny.plan.json"
    data = json.loads(manifest_path(plan).read_text())
    assert data["compute_capability"] == "8.6" and data["config"] == "tiny" and data["tracker"]["search_size"] == 128
    assert read_manifest(plan) == _manifest()


@pytest.mark.parametrize("value, expected", [("8.6", (8, 6)), ([9, 0], (9, 0)), (8.9, (8, 9))])
def test_compute_capability_forms(value, expected) -> None:
    assert parse_compute_capability(value) == expected


def test_buffers_sized_from_the_engine_and_bound_once(plan: Path) -> None:
    backend, cudart, engine = _open(plan)
    f32 = 4
    expected = sorted([3 * 64 * 64 * f32, 3 * 128 * 128 * f32, 1 * f32, 64 * f32, 128 * f32, 128 * f32])
    assert cudart.sizes() == expected
    assert sorted(len(b) for b in cudart.pinned.values()) == expected
    ctx = engine.contexts[0]
    assert set(ctx.addresses) == {"template", "search", "threshold", "score_map", "size_map", "offset_map"}
    assert set(ctx.addresses.values()) == set(cudart.device)  # every tensor bound to its own device buffer
    assert len(cudart.streams) == 1


def test_run_copies_in_executes_copies_out(plan: Path) -> None:
    backend, cudart, engine = _open(plan)
    search = np.full((1, 3, 128, 128), 0.5, np.float32)
    out = backend.run(
        {
            "template": np.zeros((1, 3, 64, 64), np.float32),
            "search": search,
            "threshold": np.zeros(1, np.float32),
            "template_mask": np.ones((1, 16), np.float32),
        }
    )
    np.testing.assert_allclose(out["score_map"], 1 / (1 + np.exp(-2.0)), rtol=1e-6)
    assert out["score_map"].dtype == np.float32
    assert [d for d, _ in cudart.copies] == ["h2d"] * 3 + ["d2h"] * 3
    assert engine.contexts[0].calls == 1 and cudart.synchronized == 1


def test_tracks_like_onnx_runtime(plan: Path, fake_onnx: Path) -> None:
    frames, truth = square_frames(10)
    boxes = []
    for backend in (_open(plan)[0], open_model(fake_onnx)):
        tracker = Tracker(backend)
        tracker.initialize(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB), truth[0])
        boxes.append([tracker.track(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).box_xywh for f in frames[1:]])
    np.testing.assert_allclose(boxes[0], boxes[1], atol=1e-4)


def test_fp16_io_is_cast_on_copy(plan: Path) -> None:
    backend, cudart, engine = _open(plan, io_dtype=DataType.HALF, decisions=True)
    assert sorted(len(b) for b in cudart.device.values())[-1] == 3 * 128 * 128 * 2  # search buffer in fp16
    out = backend.run(
        {
            "template": np.zeros((1, 3, 64, 64), np.float32),
            "search": np.full((1, 3, 128, 128), 0.3, np.float32),
            "threshold": np.zeros(1, np.float32),
        }
    )
    assert out["score_map"].dtype == np.float32
    np.testing.assert_allclose(out["score_map"], 1 / (1 + np.exp(-1.2)), atol=2e-3)
    assert out["decisions"].dtype == np.int32 and out["decisions"].shape == (1, 3, 64) and out["decisions"].all()


def test_unsupported_io_dtype_is_refused_at_load(plan: Path) -> None:
    tensors = tiny_tensors()
    tensors[3].dtype = DataType.INT32  # score_map
    with pytest.raises(ArtifactMismatchError, match="'score_map' has dtype int32"):
        _open(plan, tensors=tensors)
    tensors[3].dtype = DataType.FP8
    with pytest.raises(ArtifactMismatchError, match="type numpy cannot hold"):
        _open(plan, tensors=tensors)


def test_dynamic_shape_is_refused(plan: Path) -> None:
    tensors = tiny_tensors()
    tensors[1].shape = (-1, 3, 128, 128)
    with pytest.raises(ArtifactMismatchError, match="dynamic shape"):
        _open(plan, tensors=tensors)


def test_engine_for_another_config_is_refused(plan: Path) -> None:
    tensors = tiny_tensors()
    tensors[1].shape = (1, 3, 256, 256)
    cudart = FakeCudart()
    with pytest.raises(ArtifactMismatchError, match="'search' has shape"):
        _open(plan, tensors=tensors, cudart=cudart)
    assert not cudart.device and not cudart.pinned and not cudart.streams  # released on failure


def test_missing_manifest_names_the_rebuild_command(tmp_path: Path) -> None:
    path = tmp_path / "lonely.plan"
    path.write_bytes(PLAN_BYTES)
    with pytest.raises(ArtifactMismatchError, match="no manifest lonely.plan.json.*grm-export --config NAME --engine"):
        open_plan(path, trt=make_trt(None), cuda=CudaPythonApi(FakeCudart(), id))


def test_tensorrt_version_mismatch(plan: Path) -> None:
    with pytest.raises(
        ArtifactMismatchError,
        match=r"built with TensorRT 10.13.0.35 but TensorRT 11.4.0.106 is installed; "
        r"rebuild with: grm-export --config tiny --engine --output .*tiny.plan",
    ):
        _open(plan, version="11.4.0.106")
    _open(plan, version="10.13.0.99")  # another build number of the same release is fine


def test_gpu_mismatch(plan: Path) -> None:
    with pytest.raises(ArtifactMismatchError, match=r"built for NVIDIA Fake GPU \(sm 8.6\) but this GPU is .*sm 9.0"):
        _open(plan, cudart=FakeCudart(capability=(9, 0)))
    with pytest.raises(ArtifactMismatchError, match="but this GPU is NVIDIA Other"):
        _open(plan, cudart=FakeCudart(gpu_name="NVIDIA Other"))


def test_plan_changed_since_build(plan: Path) -> None:
    plan.write_bytes(PLAN_BYTES + b"!")
    with pytest.raises(ArtifactMismatchError, match="does not match its manifest"):
        _open(plan)


def test_fp16_manifest_rebuild_command(tmp_path: Path) -> None:
    path = tmp_path / "half.plan"
    path.write_bytes(PLAN_BYTES)
    meta = tiny_metadata()
    write_manifest(path, _manifest(metadata=type(meta)(**{**meta.__dict__, "precision": "fp16"})))
    with pytest.raises(ArtifactMismatchError, match="grm-export --config tiny --fp16 --engine"):
        _open(path, version="11.0.0.1")


def test_int8_manifest_names_a_calibrate_command_the_cli_accepts(tmp_path: Path) -> None:
    """An INT8 plan is rebuilt by grm-calibrate --engine; the hint must parse with the real command line."""
    import dataclasses

    import typer

    from grm.calibration.cli import app

    path = tmp_path / "tiny_int8.plan"
    path.write_bytes(PLAN_BYTES)
    write_manifest(path, _manifest(metadata=dataclasses.replace(tiny_metadata(), precision="int8")))
    with pytest.raises(ArtifactMismatchError, match="rebuild with: grm-calibrate ") as info:
        _open(path, version="11.4.0.106")
    command = str(info.value).split("rebuild with: ", 1)[1].split()
    assert command[0] == "grm-calibrate" and "--engine" in command
    assert command[command.index("--output") + 1] == str(tmp_path / "tiny_int8.onnx")  # --engine writes <output>.plan
    ctx = typer.main.get_command(app).make_context("grm-calibrate", command[1:])
    assert ctx.params["engine"] is True and ctx.params["model"] == Path("grm_tiny.onnx")


def test_config_mismatch(plan: Path) -> None:
    with pytest.raises(ArtifactMismatchError, match="exported for config 'tiny' but --config is 'vitb_256'"):
        _open(plan, config="vitb_256")


def test_undeserializable_plan(plan: Path) -> None:
    with pytest.raises(ArtifactMismatchError, match="could not deserialize"):
        open_plan(plan, trt=make_trt(None), cuda=CudaPythonApi(FakeCudart(), id))


@pytest.mark.parametrize("failure", ["runtime", "deserialize", "context"])
def test_open_plan_releases_cuda_on_any_exception(plan: Path, failure: str) -> None:
    """TensorRT raises RuntimeError (not a GrmError) from its bindings; the stream and buffers must still go."""
    engine = Engine(tiny_tensors(), brightness_outputs)
    trt = make_trt(engine)

    def boom(*args, **kwargs):
        raise RuntimeError(f"{failure} failed inside TensorRT")

    if failure == "runtime":
        trt.Runtime = boom
    elif failure == "deserialize":
        trt.Runtime.deserialize_cuda_engine = boom
    else:
        engine.create_execution_context = boom
    cudart = FakeCudart()
    with pytest.raises(RuntimeError, match=f"{failure} failed"):
        open_plan(plan, trt=trt, cuda=CudaPythonApi(cudart, native_handle=id))
    assert not cudart.device and not cudart.pinned and not cudart.streams


def test_open_plan_releases_cuda_on_ctrl_c_while_allocating(plan: Path) -> None:
    cudart = FakeCudart()
    real_malloc = cudart.cudaMalloc
    calls = []

    def interrupted_malloc(nbytes: int):
        calls.append(nbytes)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_malloc(nbytes)

    cudart.cudaMalloc = interrupted_malloc
    with pytest.raises(KeyboardInterrupt):
        _open(plan, cudart=cudart)
    assert not cudart.device and not cudart.pinned and not cudart.streams


def test_uint8_and_bf16_engine_tensors(plan: Path) -> None:
    """UINT8 has a numpy type (decisions may use it, maps may not); BF16 has none and is refused at load."""
    tensors = tiny_tensors(decisions=True)
    tensors[-1].dtype = DataType.UINT8  # decisions
    backend, _, _ = _open(plan, tensors=tensors, decisions=True)
    out = backend.run(
        {
            "template": np.zeros((1, 3, 64, 64), np.float32),
            "search": np.ones((1, 3, 128, 128), np.float32),
            "threshold": np.zeros(1, np.float32),
        }
    )
    assert out["decisions"].dtype == np.uint8 and out["decisions"].all()
    tensors = tiny_tensors()
    tensors[3].dtype = DataType.UINT8  # score_map
    with pytest.raises(ArtifactMismatchError, match="'score_map' has dtype uint8"):
        _open(plan, tensors=tensors)
    tensors[3].dtype = DataType.BF16
    with pytest.raises(ArtifactMismatchError, match="'score_map' has a type numpy cannot hold"):
        _open(plan, tensors=tensors)


def test_stream_work_runs_only_at_synchronize() -> None:
    """The fake stream is asynchronous like CUDA's: a queued copy reads its pinned source when it runs."""
    cudart = FakeCudart()
    cuda = CudaPythonApi(cudart, native_handle=id)
    host = cuda.host_buffer((4,), np.dtype(np.float32))
    back = cuda.host_buffer((4,), np.dtype(np.float32))
    device = cuda.device_buffer(host.nbytes)
    host[...] = 1.0
    cuda.to_device(device, host)
    host[...] = 2.0  # changed before the stream ran: the copy sees 2
    cuda.to_host(back, device)
    assert not back.any()
    cuda.synchronize()
    np.testing.assert_array_equal(back, 2.0)
    cuda.close()


def test_frames_in_a_row_each_see_their_own_input(plan: Path) -> None:
    backend, cudart, engine = _open(plan)
    scores = []
    for value in (0.0, 0.5, 1.0):
        out = backend.run(
            {
                "template": np.zeros((1, 3, 64, 64), np.float32),
                "search": np.full((1, 3, 128, 128), value, np.float32),
                "threshold": np.zeros(1, np.float32),
            }
        )
        scores.append(float(out["score_map"][0, 0, 0, 0]))
        assert not cudart.streams[0].pending  # everything ran before the outputs were read
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-4.0 * np.array([0.0, 0.5, 1.0]))), rtol=1e-6)


def test_no_driver_is_backend_unavailable(plan: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="cudaSetDevice failed with cudaErrorInsufficientDriver"):
        _open(plan, cudart=FakeCudart(set_device_error=CudaError.cudaErrorInsufficientDriver))


def test_enqueue_failure(plan: Path) -> None:
    backend, _, engine = _open(plan)
    engine.contexts[0].fail = True
    with pytest.raises(BackendUnavailableError, match="execute_async_v3 failed"):
        backend.run(
            {
                "template": np.zeros((1, 3, 64, 64), np.float32),
                "search": np.zeros((1, 3, 128, 128), np.float32),
                "threshold": np.zeros(1, np.float32),
            }
        )


def test_close_frees_everything(plan: Path) -> None:
    backend, cudart, _ = _open(plan)
    backend.close()
    assert not cudart.device and not cudart.pinned and not cudart.streams


def test_engine_specs(plan: Path) -> None:
    engine = Engine(tiny_tensors(DataType.HALF), brightness_outputs)
    specs = {s.name: s for s in engine_specs(engine, make_trt(engine))}
    assert specs["search"].is_input and specs["search"].nbytes == 3 * 128 * 128 * 2
    assert not specs["score_map"].is_input and specs["score_map"].dtype == np.float16


def test_missing_tensorrt_package(plan: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="needs the tensorrt package.*pypi.nvidia.com"):
        open_model(plan)


def test_missing_cuda_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    with pytest.raises(BackendUnavailableError, match="needs cuda-python"):
        load_cuda_api("cuda-python")
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(BackendUnavailableError, match="needs pycuda"):
        load_cuda_api("pycuda")
    with pytest.raises(BackendUnavailableError, match="unknown CUDA binding"):
        load_cuda_api("opencl")


# --------------------------------------------------------------------------------------- real GPU


def _gpu_available() -> bool:
    if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("cuda") is None:
        return False
    from cuda.bindings import runtime as cudart

    err, count = cudart.cudaGetDeviceCount()
    return err == cudart.cudaError_t.cudaSuccess and count > 0


needs_gpu = pytest.mark.skipif(not _gpu_available(), reason="needs tensorrt, cuda-python and an NVIDIA GPU")


def _track(backend, frames, truth) -> list:
    tracker = Tracker(backend)
    tracker.initialize(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB), truth[0])
    boxes = [tracker.track(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).box_xywh for f in frames[1:]]
    backend.close()
    return boxes


@pytest.mark.gpu
@pytest.mark.tensorrt
@needs_gpu
@pytest.mark.parametrize("qdq", [False, True], ids=["fp32", "int8"])
def test_real_tensorrt_plan_tracks_like_onnx_runtime(tmp_path: Path, qdq: bool) -> None:
    """The runtime's builder on this GPU (FP32, and INT8 from a Q/DQ model), run by the TensorRT backend,
    against ONNX Runtime CPU on the same ONNX; the manifest states the engine's precision."""
    from grm.runtime.backends.trt_build import build_engine

    from .runtime_fakes import build_model

    onnx_path = build_model(tmp_path / "fake.onnx", qdq=qdq)
    plan = build_engine(onnx_path, tmp_path / "fake.plan").plan
    assert read_manifest(plan).metadata.precision == ("int8" if qdq else "fp32")
    frames, truth = square_frames(10)
    trt_boxes = _track(open_model(plan, backend="tensorrt"), frames, truth)
    ort_boxes = _track(open_model(onnx_path, backend="onnxruntime"), frames, truth)
    np.testing.assert_allclose(trt_boxes, ort_boxes, atol=1e-3 if not qdq else 0.5)
    assert trt_boxes[-1][0] > trt_boxes[0][0] + 10  # it followed the square


@pytest.mark.gpu
@needs_gpu
def test_real_cuda_python_buffers_round_trip() -> None:
    cuda = load_cuda_api("cuda-python")
    host_in = cuda.host_buffer((4, 4), np.dtype(np.float32))
    host_out = cuda.host_buffer((4, 4), np.dtype(np.float32))
    device = cuda.device_buffer(host_in.nbytes)
    host_in[...] = np.arange(16, dtype=np.float32).reshape(4, 4)
    cuda.to_device(device, host_in)
    cuda.to_host(host_out, device)
    cuda.synchronize()
    np.testing.assert_array_equal(host_out, host_in)
    name, (major, _) = cuda.device_info()
    assert name and major >= 5
    cuda.close()


class FakePycudaDriver:
    """``pycuda.driver`` subset on ctypes memory, to run the backend through the pycuda binding."""

    class Error(Exception):
        pass

    class _Allocation:
        def __init__(self, nbytes: int) -> None:
            self.buf = ctypes.create_string_buffer(nbytes)
            self.freed = False

        def __int__(self) -> int:
            return ctypes.addressof(self.buf)

        def free(self) -> None:
            self.freed = True

    class Stream:
        handle = 1234

        def synchronize(self) -> None:
            pass

    class Context:
        @staticmethod
        def get_device():
            return type("Dev", (), {"name": lambda self: GPU, "compute_capability": lambda self: (8, 6)})()

    def __init__(self) -> None:
        self.allocations = []

    def pagelocked_empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def mem_alloc(self, nbytes: int):
        self.allocations.append(self._Allocation(nbytes))
        return self.allocations[-1]

    def memcpy_htod_async(self, dest, src, stream) -> None:
        ctypes.memmove(int(dest), src.ctypes.data, src.nbytes)

    def memcpy_dtoh_async(self, dest, src, stream) -> None:
        ctypes.memmove(dest.ctypes.data, int(src), dest.nbytes)


def test_pycuda_binding_runs_the_same_engine(plan: Path) -> None:
    from grm.runtime.backends.cuda_memory import PycudaApi

    driver = FakePycudaDriver()
    cuda = PycudaApi(driver)
    engine = Engine(tiny_tensors(), brightness_outputs)
    backend = open_plan(plan, trt=make_trt(engine), cuda=cuda)
    assert backend.name == "tensorrt[pycuda]" and cuda.stream_handle == 1234
    out = backend.run(
        {
            "template": np.zeros((1, 3, 64, 64), np.float32),
            "search": np.full((1, 3, 128, 128), 0.5, np.float32),
            "threshold": np.zeros(1, np.float32),
        }
    )
    np.testing.assert_allclose(out["score_map"], 1 / (1 + np.exp(-2.0)), rtol=1e-6)
    backend.close()
    assert all(a.freed for a in driver.allocations) and len(driver.allocations) == 6
