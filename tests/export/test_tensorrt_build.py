"""TensorRT engine building: version-dependent precision logic against a fake tensorrt module; real builds on GPU."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import types
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from grm.export.metadata import build_metadata, write_metadata
from grm.export.tensorrt_build import build_engine, gpu_info, import_tensorrt, plan_build
from grm.runtime.atomic import sha256_file
from grm.runtime.backends.manifest import read_manifest
from grm.runtime.errors import ArtifactMismatchError, BackendUnavailableError, ConfigError
from grm.train.config import get_config

GPU = ("NVIDIA Fake GPU", (8, 6))


def _fake_trt(version: str, parse_ok: bool = True, plan: bytes | None = b"PLAN-BYTES") -> types.SimpleNamespace:
    """Just enough of the tensorrt API to record what build_engine asks for."""
    calls: dict[str, list] = {"flags": [], "cleared": [], "network_flags": [], "pool": [], "cache_in": []}
    major = int(version.split(".")[0])
    builder_flags = {"TF32": "TF32"} | ({"FP16": "FP16"} if major < 11 else {})

    class Parser:
        num_errors = 0 if parse_ok else 2

        def __init__(self, network, logger) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            calls["parsed"] = path
            return parse_ok

        def get_error(self, i: int) -> str:
            return f"In node {i} (importFoo): UNSUPPORTED_NODE: op {i} not supported"

    class Cache:
        def serialize(self) -> bytes:
            return b"CACHE-AFTER"

    class Config:
        def set_memory_pool_limit(self, pool, size) -> None:
            calls["pool"].append((pool, size))

        def set_flag(self, flag) -> None:
            calls["flags"].append(flag)

        def clear_flag(self, flag) -> None:
            calls["cleared"].append(flag)

        def create_timing_cache(self, data: bytes) -> Cache:
            calls["cache_in"].append(data)
            return Cache()

        def set_timing_cache(self, cache, ignore_mismatch: bool) -> None:
            pass

        def get_timing_cache(self) -> Cache:
            return Cache()

    class Builder:
        def __init__(self, logger) -> None:
            pass

        def create_network(self, flags: int) -> object:
            calls["network_flags"].append(flags)
            return object()

        def create_builder_config(self) -> Config:
            return Config()

        def build_serialized_network(self, network, config) -> bytes | None:
            return plan

    class Logger:
        WARNING = 2

        def __init__(self, level) -> None:
            pass

    return types.SimpleNamespace(
        __version__=version,
        Logger=Logger,
        Builder=Builder,
        OnnxParser=Parser,
        BuilderFlag=types.SimpleNamespace(**builder_flags),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=1),
        calls=calls,
    )


def _onnx(tmp_path: Path, precision: str) -> Path:
    vi = helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 2))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 2))
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [vi], [out]))
    meta = build_metadata(
        get_config("tiny"), precision=precision, opset=18, checkpoint_sha256="c" * 64, outputs_masks=False
    )
    write_metadata(model, meta)
    path = tmp_path / f"grm_tiny_{precision}.onnx"
    onnx.save(model, path)
    return path


def test_trt10_fp16_flag_on_fp32_onnx_and_manifest(tmp_path: Path) -> None:
    trt = _fake_trt("10.13.0.35")
    plan = tmp_path / "grm.plan"
    result = build_engine(_onnx(tmp_path, "fp32"), plan, workspace_bytes=1 << 30, fp16=True, trt=trt, gpu=lambda: GPU)
    assert trt.calls["flags"] == ["FP16"] and trt.calls["network_flags"] == [0]
    assert trt.calls["pool"] == [("WORKSPACE", 1 << 30)]
    assert plan.read_bytes() == b"PLAN-BYTES"
    raw = json.loads(result.manifest.read_text())
    assert raw["tensorrt_version"] == "10.13.0.35" and raw["gpu_name"] == "NVIDIA Fake GPU"
    assert raw["compute_capability"] == "8.6" and raw["plan_sha256"] == sha256_file(plan)
    manifest = read_manifest(plan)  # the runtime's reader accepts it
    assert manifest.metadata.precision == "fp16" and manifest.metadata.config == "tiny"
    assert manifest.metadata.checkpoint_sha256 == "c" * 64
    assert manifest.metadata.extra["engine_precision_source"] == "fp16 builder flag"


def test_trt10_fp16_onnx_is_built_strongly_typed(tmp_path: Path) -> None:
    trt = _fake_trt("10.8.0")
    build_engine(_onnx(tmp_path, "fp16"), tmp_path / "e.plan", trt=trt, gpu=lambda: GPU)
    assert trt.calls["flags"] == [] and trt.calls["network_flags"] == [1 << 1]


def test_trt10_fp32_engine_turns_tf32_off(tmp_path: Path) -> None:
    trt = _fake_trt("10.8.0")
    build_engine(_onnx(tmp_path, "fp32"), tmp_path / "e.plan", trt=trt, gpu=lambda: GPU)
    assert trt.calls["flags"] == [] and trt.calls["cleared"] == ["TF32"] and trt.calls["network_flags"] == [0]


def test_trt11_takes_precision_from_onnx(tmp_path: Path) -> None:
    trt = _fake_trt("11.4.0.106")
    result = build_engine(_onnx(tmp_path, "fp16"), tmp_path / "e.plan", trt=trt, gpu=lambda: GPU)
    assert trt.calls["flags"] == [] and trt.calls["network_flags"] == [0]
    assert result.build.strongly_typed and read_manifest(result.plan).metadata.precision == "fp16"


def test_trt11_refuses_fp16_flag_on_fp32_onnx(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="strongly typed .* grm-export --config tiny --fp16 --engine"):
        build_engine(_onnx(tmp_path, "fp32"), tmp_path / "e.plan", fp16=True, trt=_fake_trt("11.4.0"), gpu=lambda: GPU)
    assert not (tmp_path / "e.plan").exists()


def test_old_tensorrt_is_refused() -> None:
    with pytest.raises(BackendUnavailableError, match="TensorRT 8.6.1 is too old"):
        plan_build(_fake_trt("8.6.1"), "fp32", False, "tiny")


def test_parser_errors_logged_one_per_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="grm.export.tensorrt_build")
    with pytest.raises(ArtifactMismatchError, match="could not parse .*: 2 error\\(s\\), first: In node 0"):
        build_engine(
            _onnx(tmp_path, "fp32"), tmp_path / "e.plan", trt=_fake_trt("10.8.0", parse_ok=False), gpu=lambda: GPU
        )
    assert [r.getMessage() for r in caplog.records] == [
        "TensorRT ONNX parser: In node 0 (importFoo): UNSUPPORTED_NODE: op 0 not supported",
        "TensorRT ONNX parser: In node 1 (importFoo): UNSUPPORTED_NODE: op 1 not supported",
    ]


def test_failed_build_and_bad_workspace(tmp_path: Path) -> None:
    onnx_path = _onnx(tmp_path, "fp32")
    with pytest.raises(ArtifactMismatchError, match="could not build an engine"):
        build_engine(onnx_path, tmp_path / "e.plan", trt=_fake_trt("10.8.0", plan=None), gpu=lambda: GPU)
    with pytest.raises(ConfigError, match="workspace 0 bytes must be positive"):
        build_engine(onnx_path, tmp_path / "e.plan", workspace_bytes=0, trt=_fake_trt("10.8.0"), gpu=lambda: GPU)
    assert not (tmp_path / "e.plan").exists()


def test_timing_cache_is_loaded_and_saved(tmp_path: Path) -> None:
    cache = tmp_path / "trt.cache"
    cache.write_bytes(b"CACHE-BEFORE")
    trt = _fake_trt("10.8.0")
    build_engine(_onnx(tmp_path, "fp32"), tmp_path / "e.plan", timing_cache=cache, trt=trt, gpu=lambda: GPU)
    assert trt.calls["cache_in"] == [b"CACHE-BEFORE"] and cache.read_bytes() == b"CACHE-AFTER"


def test_missing_tensorrt_names_package_and_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="needs the tensorrt package .*pip install tensorrt"):
        import_tensorrt()


def test_missing_gpu_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailableError, match="needs an NVIDIA GPU"):
        gpu_info()


def test_onnx_without_grm_metadata_is_refused(tmp_path: Path) -> None:
    path = _onnx(tmp_path, "fp32")
    model = onnx.load(path)
    del model.metadata_props[:]
    onnx.save(model, path)
    with pytest.raises(ArtifactMismatchError, match="has no 'grm' metadata"):
        build_engine(path, tmp_path / "e.plan", trt=_fake_trt("10.8.0"), gpu=lambda: GPU)


def _has_tensorrt_and_gpu() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        gpu_info()
    except BackendUnavailableError:
        return False
    return True


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(not _has_tensorrt_and_gpu(), reason="needs the tensorrt package and an NVIDIA GPU")
def test_real_engine_from_tiny_export(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """Export, build on this GPU, and verify the plan against PyTorch through the runtime's TensorRT backend."""
    from grm.export.pipeline import ExportOptions, run_export

    options = ExportOptions(
        config="tiny", checkpoint=tiny_checkpoint, output=tmp_path / "grm_tiny.plan", with_decisions=True
    )
    result = run_export(options)
    assert result.engine is not None and result.engine_report is not None and result.engine_report.passed
    manifest = read_manifest(result.engine.plan)
    assert manifest.plan_sha256 == sha256_file(result.engine.plan) and manifest.metadata.config == "tiny"
    assert all(s.decision_agreement == 1.0 for s in result.engine_report.thresholds)
