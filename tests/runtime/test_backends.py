"""open_model dispatch and the ONNX Runtime backend, on small fake grm models."""

from __future__ import annotations

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

from .runtime_fakes import FEAT, SIZE_NORM, TINY, build_model, square_frames, tiny_metadata


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
    assert backend.has_decisions
    inputs = _inputs(-1.0)
    inputs[contract.THRESHOLD][0] = 0.5
    out = backend.run(inputs)
    assert out["decisions"].shape == (1, 3, 64) and not out["decisions"].any()


@pytest.mark.parametrize("name, kind", [("a.onnx", "onnx"), ("a.plan", "plan"), ("a.engine", "plan"),
                                        ("GRM_ep0300.pth.tar", "checkpoint"), ("m.pth", "checkpoint")])
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


@pytest.mark.parametrize("backend, provider", [("ort-cuda", "CUDAExecutionProvider"),
                                               ("ort-tensorrt", "TensorrtExecutionProvider")])
def test_missing_gpu_provider_is_an_error_not_a_fallback(fake_onnx: Path, backend: str, provider: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(BackendUnavailableError, match=f"{provider} is not available.*onnxruntime-gpu"):
        open_model(fake_onnx, backend=backend)


def test_provider_that_fails_to_start(fake_onnx: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """onnxruntime-gpu lists the CUDA EP even without a GPU and then silently runs on the CPU."""
    import onnxruntime as ort

    real = ort.InferenceSession
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession",
                        lambda path, sess_options, providers: real(path, sess_options=sess_options,
                                                                   providers=["CPUExecutionProvider"]))
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
    assert ort_backend.resolve_providers("ort-tensorrt", ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                          *cpu_only]) == ["TensorrtExecutionProvider",
                                                                          "CUDAExecutionProvider", *cpu_only]
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
    with pytest.raises(ArtifactMismatchError, match="exported for config 'tiny' but --config is 'vitb_256'.*grm-export"):
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
