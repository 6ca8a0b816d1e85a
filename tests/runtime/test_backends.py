"""open_model dispatch and the ONNX Runtime backend, on small fake grm models."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from grm.runtime import contract
from grm.runtime.backends import BACKENDS, model_kind, open_model
from grm.runtime.backends import ort as ort_backend
from grm.runtime.errors import ArtifactMismatchError, BackendUnavailableError, InputError
from grm.runtime.geometry import iou_xywh
from grm.runtime.params import METADATA_KEY
from grm.runtime.tracker import Tracker

from .runtime_fakes import FEAT, SIZE_NORM, TINY, DeviceSession, build_model, square_frames, tiny_metadata


def _inputs(search_value: float = 0.0) -> dict[str, np.ndarray]:
    return {
        contract.TEMPLATE: np.zeros((1, 3, 64, 64), np.float32),
        contract.SEARCH: np.full((1, 3, 128, 128), search_value, np.float32),
        contract.THRESHOLD: np.zeros(1, np.float32),
    }


def test_onnx_backend_reads_metadata_and_computes_outputs(fake_onnx: Path) -> None:
    backend = open_model(fake_onnx, backend="onnxruntime", threads=1)
    assert backend.metadata.config == "tiny"
    assert backend.metadata.tracker == TINY
    assert backend.name == "onnxruntime[CPUExecutionProvider]"
    out = backend.run(_inputs(0.5))
    assert set(out) == {"score_map", "size_map", "offset_map"}
    np.testing.assert_allclose(out["score_map"], 1 / (1 + np.exp(-2.0)), rtol=1e-6)
    np.testing.assert_allclose(out["size_map"], SIZE_NORM)
    assert out["score_map"].dtype == np.float32 and out["score_map"].shape == (1, 1, FEAT, FEAT)
    backend.close()


def test_outputs_are_copies_not_reused_buffers(fake_onnx: Path) -> None:
    backend = open_model(fake_onnx, backend="ort-cpu")
    first = backend.run(_inputs(0.0))["score_map"]
    second = backend.run(_inputs(1.0))["score_map"]
    assert first[0, 0, 0, 0] == pytest.approx(0.5) and second[0, 0, 0, 0] == pytest.approx(1 / (1 + np.exp(-4.0)))


def test_session_is_tuned_for_latency(fake_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    seen = {}
    real = ort.InferenceSession

    def spy(path, sess_options=None, providers=None):
        seen["opts"], seen["providers"] = sess_options, providers
        return real(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    open_model(fake_onnx, backend="onnxruntime", threads=2)
    opts = seen["opts"]
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.intra_op_num_threads == 2
    assert seen["providers"] == [("CPUExecutionProvider", {})]


def test_tracks_a_moving_square(fake_onnx: Path) -> None:
    frames, truth = square_frames(12)
    tracker = Tracker(open_model(fake_onnx))
    tracker.initialize(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB), truth[0])
    for frame, gt in zip(frames[1:], truth[1:], strict=True):
        res = tracker.track(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        centre = np.array(res.box_xywh[:2]) + 10
        assert np.linalg.norm(centre - (np.array(gt[:2]) + 10)) < 8  # within one 10 px feature cell
        assert res.box_xywh[2:] == pytest.approx((20.0, 20.0))
        assert 0.9 < res.score < 1.0
        assert iou_xywh(res.box_xywh, gt) > 0.3


def test_decisions_output_is_exposed(fake_onnx_decisions: Path) -> None:
    backend = open_model(fake_onnx_decisions)
    inputs = _inputs(-1.0)
    inputs[contract.THRESHOLD][0] = 0.5
    out = backend.run(inputs)
    assert out["decisions"].shape == (1, 3, 64) and not out["decisions"].any()


@pytest.mark.parametrize(
    "name, kind",
    [
        ("a.onnx", "onnx"),
        ("a.plan", "plan"),
        ("a.engine", "plan"),
        ("GRM_ep0300.pth.tar", "checkpoint"),
        ("m.pth", "checkpoint"),
    ],
)
def test_model_kind(name: str, kind: str) -> None:
    assert model_kind(name) == kind


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="cannot tell the model type"):
        open_model(tmp_path / "model.bin")
    with pytest.raises(InputError, match="model file not found"):
        open_model(tmp_path / "missing.onnx")


@pytest.mark.parametrize("backend", ["tensorrt", "torch"])
def test_backend_that_cannot_run_onnx(fake_onnx: Path, backend: str) -> None:
    with pytest.raises(ArtifactMismatchError, match=f"--backend {backend} cannot run"):
        open_model(fake_onnx, backend=backend)


def test_unknown_backend(fake_onnx: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="unknown backend 'cuda'"):
        open_model(fake_onnx, backend="cuda")
    assert "ort-cuda" in BACKENDS and "auto" in BACKENDS


@pytest.mark.parametrize(
    "backend, provider", [("ort-cuda", "CUDAExecutionProvider"), ("ort-tensorrt", "TensorrtExecutionProvider")]
)
def test_missing_gpu_provider_is_an_error_not_a_fallback(
    fake_onnx: Path, backend: str, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailableError, match=f"{provider} is not available.*onnxruntime-gpu"):
        open_model(fake_onnx, backend=backend)


def test_provider_that_fails_to_start(fake_onnx: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """onnxruntime-gpu lists the CUDA EP even without a GPU and then silently runs on the CPU."""
    import onnxruntime as ort

    real = ort.InferenceSession
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(
        ort,
        "InferenceSession",
        lambda path, sess_options, providers: real(path, sess_options=sess_options, providers=["CPUExecutionProvider"]),
    )
    with pytest.raises(BackendUnavailableError, match="could not start CUDAExecutionProvider"):
        open_model(fake_onnx, backend="ort-cuda")
    with caplog.at_level(logging.WARNING):
        backend = open_model(fake_onnx, backend="auto")
    assert backend.name == "onnxruntime[CPUExecutionProvider]"
    assert "CUDAExecutionProvider could not start" in caplog.text


def test_resolve_providers() -> None:
    cpu_only = ["CPUExecutionProvider"]
    assert ort_backend.resolve_providers("auto", cpu_only) == cpu_only
    assert ort_backend.resolve_providers("auto", ["CUDAExecutionProvider", *cpu_only])[0] == "CUDAExecutionProvider"
    assert ort_backend.resolve_providers(
        "ort-tensorrt", ["TensorrtExecutionProvider", "CUDAExecutionProvider", *cpu_only]
    ) == ["TensorrtExecutionProvider", "CUDAExecutionProvider", *cpu_only]
    with pytest.raises(BackendUnavailableError):
        ort_backend.resolve_providers("auto", cpu_only, providers=["OpenVINOExecutionProvider"])


def test_model_without_metadata(model_dir: Path) -> None:
    path = build_model(model_dir / "plain.onnx", with_metadata=False)
    with pytest.raises(ArtifactMismatchError, match="not a grm-tracker export"):
        open_model(path)


def test_model_with_broken_metadata(tmp_path: Path, fake_onnx: Path) -> None:
    model = onnx.load(str(fake_onnx))
    model.metadata_props[0].value = "{not json"
    onnx.save(model, str(tmp_path / "broken.onnx"))
    with pytest.raises(ArtifactMismatchError, match="unreadable grm metadata"):
        open_model(tmp_path / "broken.onnx")


def test_shapes_that_disagree_with_metadata(model_dir: Path) -> None:
    """A 256-px search graph labelled with tiny (128-px) metadata."""
    path = build_model(model_dir / "wrong_shape.onnx", search_size=256, metadata=tiny_metadata())
    with pytest.raises(ArtifactMismatchError, match="'search' has shape \\[1, 3, 256, 256\\].*\\[1, 3, 128, 128\\]"):
        open_model(path)


def test_config_checked_against_metadata(fake_onnx: Path) -> None:
    assert open_model(fake_onnx, config="tiny").metadata.config == "tiny"
    with pytest.raises(
        ArtifactMismatchError, match="exported for config 'tiny' but --config is 'vitb_256'.*grm-export"
    ):
        open_model(fake_onnx, config="vitb_256")


def test_not_an_onnx_file(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"definitely not protobuf")
    with pytest.raises(ArtifactMismatchError, match="ONNX Runtime cannot load"):
        open_model(tmp_path / "junk.onnx")


def test_checkpoint_goes_to_the_torch_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import grm.runtime.backends as backends

    calls = {}

    def factory(path, config=None, **options):
        calls.update(path=Path(path), config=config, **options)
        return "backend"

    monkeypatch.setattr(backends, "plugin", lambda name: factory)
    ckpt = tmp_path / "GRM_ep0300.pth.tar"
    ckpt.write_bytes(b"x")
    assert open_model(ckpt, config="vitb_256", threads=1) == "backend"
    assert calls == {"path": ckpt, "config": "vitb_256", "threads": 1}


def test_metadata_key_is_the_contract_one(fake_onnx: Path) -> None:
    keys = [p.key for p in onnx.load(str(fake_onnx)).metadata_props]
    assert keys == [METADATA_KEY]


# ------------------------------------------------------------------------------ GPU providers, through fakes

GPU_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture
def device_sessions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[DeviceSession]:
    """ONNX Runtime with GPU providers that bind like a GPU session; TensorRT EP caches under tmp_path."""
    import onnxruntime as ort

    created: list[DeviceSession] = []

    def factory(path, sess_options=None, providers=None):
        created.append(DeviceSession(real, path, sess_options=sess_options, providers=providers))
        return created[-1]

    real = ort.InferenceSession
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(GPU_PROVIDERS))
    monkeypatch.setattr(ort, "InferenceSession", factory)
    monkeypatch.setenv("GRM_TRT_CACHE", str(tmp_path / "trt-cache"))
    return created


@pytest.mark.parametrize("backend", ["ort-cuda", "ort-tensorrt", "auto"])
def test_gpu_session_sees_every_frame(fake_onnx: Path, device_sessions: list, backend: str) -> None:
    """A GPU session copies inputs when they are bound; a binding made once would run every frame on frame 1."""
    model = open_model(fake_onnx, backend=backend)
    assert model.name == f"onnxruntime[{GPU_PROVIDERS[0] if backend == 'ort-tensorrt' else GPU_PROVIDERS[1]}]"
    scores = [float(model.run(_inputs(v))["score_map"][0, 0, 0, 0]) for v in (0.0, 0.5, 1.0, 0.5)]
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-4.0 * np.array([0.0, 0.5, 1.0, 0.5]))), rtol=1e-6)
    binding = device_sessions[-1].bindings[0]
    assert binding.input_binds == 4 * 3 and binding.output_syncs == 4
    model.close()


def test_gpu_session_tracks_like_the_cpu(fake_onnx: Path, device_sessions: list) -> None:
    frames, truth = square_frames(12)
    boxes = []
    for backend in ("ort-cuda", "onnxruntime"):
        tracker = Tracker(open_model(fake_onnx, backend=backend))
        tracker.initialize(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB), truth[0])
        boxes.append([tracker.track(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).box_xywh for f in frames[1:]])
    np.testing.assert_allclose(boxes[0], boxes[1], atol=1e-6)
    assert boxes[0][-1][0] > boxes[0][0][0] + 10  # it followed the square


def _tensorrt_options(session: DeviceSession) -> dict:
    return dict(session.requested)["TensorrtExecutionProvider"]


def test_tensorrt_ep_engine_cache_is_keyed_by_model_content(tmp_path: Path, device_sessions: list) -> None:
    """ONNX Runtime names cached engines after the file name and node names; a new checkpoint exported under
    the same name must not reuse the old engine."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = build_model(tmp_path / "a" / "grm_tiny.onnx")
    retrained = dataclasses.replace(tiny_metadata(), checkpoint_sha256="f" * 64)
    second = build_model(tmp_path / "b" / "grm_tiny.onnx", metadata=retrained)
    paths = []
    for model in (first, second, first):
        open_model(model, backend="ort-tensorrt").close()
        options = _tensorrt_options(device_sessions[-1])
        assert options["trt_engine_cache_enable"] is True
        paths.append(Path(options["trt_engine_cache_path"]))
    assert paths[0] != paths[1] and paths[0] == paths[2]
    assert paths[0] == tmp_path / "trt-cache" / hashlib.sha256(first.read_bytes()).hexdigest()
    assert all(p.is_dir() for p in paths)


def test_tensorrt_ep_runs_qdq_models_as_explicit_int8(model_dir: Path, fake_onnx: Path, device_sessions: list) -> None:
    qdq = build_model(model_dir / "fake_tiny_int8.onnx", qdq=True)
    model = open_model(qdq, backend="ort-tensorrt")
    assert model.metadata.precision == "int8"
    options = _tensorrt_options(device_sessions[-1])
    assert options["trt_int8_enable"] is True and options["trt_int8_use_native_calibration_table"] is False
    assert "trt_int8_calibration_table_name" not in options  # TensorRT refuses a table for a Q/DQ network
    assert "trt_fp16_enable" not in options
    open_model(fake_onnx, backend="ort-tensorrt")
    assert "trt_int8_enable" not in _tensorrt_options(device_sessions[-1])
    assert dict(device_sessions[-1].requested)["CUDAExecutionProvider"] == {
        "device_id": 0,
        "cudnn_conv_algo_search": "EXHAUSTIVE",
    }


def test_unwritable_tensorrt_cache_is_one_clear_error(
    fake_onnx: Path, device_sessions: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("GRM_TRT_CACHE", str(tmp_path / "file"))
    with pytest.raises(BackendUnavailableError, match="cannot create the TensorRT engine cache .*GRM_TRT_CACHE"):
        open_model(fake_onnx, backend="ort-tensorrt")


# ------------------------------------------------------------------------------------------ real GPU


def _cuda_session_starts() -> bool:
    """onnxruntime-gpu lists the CUDA EP even without a GPU, so try to start it on a one-node model."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [value],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider"])
    except Exception:  # noqa: BLE001 - any failure to start means: no usable GPU here
        return False
    return session.get_providers()[0] == "CUDAExecutionProvider"


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_session_starts(), reason="needs onnxruntime-gpu and an NVIDIA GPU")
def test_real_cuda_provider_sees_every_frame_and_tracks_like_the_cpu(fake_onnx: Path) -> None:
    model = open_model(fake_onnx, backend="ort-cuda")
    assert model.name == "onnxruntime[CUDAExecutionProvider]"
    scores = [float(model.run(_inputs(v))["score_map"][0, 0, 0, 0]) for v in (0.0, 0.5, 1.0)]
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-4.0 * np.array([0.0, 0.5, 1.0]))), rtol=1e-4)
    model.close()
    frames, truth = square_frames(12)
    boxes = []
    for backend in ("ort-cuda", "onnxruntime"):
        tracker = Tracker(open_model(fake_onnx, backend=backend))
        tracker.initialize(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB), truth[0])
        boxes.append([tracker.track(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).box_xywh for f in frames[1:]])
    np.testing.assert_allclose(boxes[0], boxes[1], atol=1e-3)


# ----------------------------------------------------------------------------------------------- packaging

REPO = Path(__file__).resolve().parents[2]
EXCLUSIVE_WITH_GPU = {"cpu", "export", "calibrate", "bench", "dev"}  # they pull onnxruntime (README rule)


def test_gpu_extra_needs_a_cuda_python_with_cuda_bindings() -> None:
    """cuda.bindings, which the runtime imports, first shipped in cuda-python 12.6.1."""
    import tomllib

    specifiers = pytest.importorskip("packaging.specifiers")
    from packaging.requirements import Requirement

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    gpu = {Requirement(r).name: Requirement(r).specifier for r in extras["gpu"]}
    assert isinstance(gpu["cuda-python"], specifiers.SpecifierSet)
    assert not gpu["cuda-python"].contains("12.6.0") and not gpu["cuda-python"].contains("12.0.0")
    assert gpu["cuda-python"].contains("12.6.1") and gpu["cuda-python"].contains("13.4.4")
    assert "onnxruntime" not in gpu and "onnxruntime-gpu" in gpu
    for name in EXCLUSIVE_WITH_GPU:
        assert "onnxruntime-gpu" not in {Requirement(r).name for r in extras[name]}


def test_install_hints_never_combine_gpu_with_cpu_extras() -> None:
    """A hint like pip install 'grm-tracker[export,gpu]' installs onnxruntime and onnxruntime-gpu together."""
    import re

    hints = []
    for package in ("runtime", "export", "calibration", "benchmarks", "train"):
        for source in (REPO / package).rglob("*.py"):
            for extras in re.findall(r"grm-tracker\[([a-z0-9_,\s-]+)\]", source.read_text(encoding="utf-8")):
                names = {e.strip() for e in extras.split(",")}
                hints.append((source.name, names))
                assert not ("gpu" in names and names & EXCLUSIVE_WITH_GPU), f"{source}: grm-tracker[{extras}]"
    assert hints  # the scan found the hints it checks
