"""TensorRT engine building (grm.runtime.backends.trt_build) against the fake ``tensorrt`` of trt_fakes.

The fake builder refuses what TensorRT refuses (precision flags on a strongly typed network, a Q/DQ network
built weakly typed without the INT8 flag) and returns what the real bindings return (None from
``build_serialized_network`` / ``create_timing_cache`` / ``get_timing_cache``, False from
``set_timing_cache``), and its plan bytes say how the network was built, so each test checks the outcome.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from grm.runtime.atomic import sha256_file
from grm.runtime.backends.cuda_memory import gpu_info
from grm.runtime.backends.manifest import read_manifest
from grm.runtime.backends.trt_build import build_engine, import_tensorrt, plan_build
from grm.runtime.errors import ArtifactMismatchError, BackendUnavailableError, ConfigError
from grm.runtime.params import METADATA_KEY

from .runtime_fakes import build_model, tiny_metadata
from .trt_fakes import CudaError, FakeCudart, make_trt

GPU = ("NVIDIA Fake GPU", (8, 6))
TRT10, TRT11 = "10.13.0.35", "11.4.0.106"
LOGGER = "grm.runtime.backends.trt_build"


def _fp16_onnx(path: Path) -> Path:
    """A small graph computing in FP16 between FP32 I/O, with grm metadata saying fp16 (like grm-export --fp16)."""
    value = helper.make_tensor_value_info
    nodes = [helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16),
             helper.make_node("Relu", ["x16"], ["y16"]),
             helper.make_node("Cast", ["y16"], ["y"], to=TensorProto.FLOAT)]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [value("x", TensorProto.FLOAT, [1, 2])],
                              [value("y", TensorProto.FLOAT, [1, 2])],
                              value_info=[value("x16", TensorProto.FLOAT16, [1, 2])])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {METADATA_KEY: dataclasses.replace(tiny_metadata(), precision="fp16").to_json()})
    onnx.save(model, str(path))
    return path


def _onnx(tmp_path: Path, precision: str) -> Path:
    """fp32: the brightness model; fp16: an FP16 graph; int8: the brightness model with Q/DQ (grm-calibrate)."""
    path = tmp_path / f"grm_tiny_{precision}.onnx"
    if precision == "fp16":
        return _fp16_onnx(path)
    return build_model(path, qdq=precision == "int8")


def _build(tmp_path: Path, precision: str, version: str, fp16: bool = False, **options):
    trt = make_trt(version=version)
    result = build_engine(_onnx(tmp_path, precision), tmp_path / "e.plan", fp16=fp16, trt=trt, gpu=lambda: GPU,
                          **options)  # fmt: skip
    return trt, result


STRONG10 = 1 << 1  # 1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED


@pytest.mark.parametrize(
    "version, precision, fp16, network_flags, flags, plan, source",
    [
        (TRT10, "fp32", False, 0, set(), "PLAN|weak|fp32|tf32=False", "onnx types"),
        (TRT10, "fp32", True, 0, {"FP16", "TF32"}, "PLAN|weak|fp16|tf32=True", "fp16 builder flag"),
        (TRT10, "fp16", False, STRONG10, {"TF32"}, "PLAN|strong|fp16|tf32=True", "onnx types"),
        (TRT10, "int8", False, STRONG10, set(), "PLAN|strong|int8|tf32=False", "onnx q/dq nodes"),
        (TRT11, "fp32", False, 0, set(), "PLAN|strong|fp32|tf32=False", "onnx types"),
        (TRT11, "fp16", False, 0, {"TF32"}, "PLAN|strong|fp16|tf32=True", "onnx types"),
        (TRT11, "int8", False, 0, set(), "PLAN|strong|int8|tf32=False", "onnx q/dq nodes"),
    ],
)
def test_precision_per_tensorrt_major(tmp_path: Path, version, precision, fp16, network_flags, flags, plan,
                                      source) -> None:  # fmt: skip
    trt, result = _build(tmp_path, precision, version, fp16=fp16)
    assert trt.state.network_flags == [network_flags] and trt.state.flags == flags and not trt.state.errors
    assert result.plan.read_bytes() == plan.encode()
    manifest = read_manifest(result.plan)  # the runtime's reader accepts it
    expected = "fp16" if fp16 else precision
    assert manifest.metadata.precision == expected and result.build.precision == expected
    assert manifest.metadata.extra["engine_precision_source"] == source
    assert manifest.tensorrt_version == version and manifest.plan_sha256 == sha256_file(result.plan)


def test_manifest_content(tmp_path: Path) -> None:
    trt, result = _build(tmp_path, "int8", TRT10, workspace_bytes=1 << 30)
    assert trt.state.pool == [("WORKSPACE", 1 << 30)]
    raw = json.loads(result.manifest.read_text())
    assert raw["tensorrt_version"] == TRT10 and raw["gpu_name"] == "NVIDIA Fake GPU"
    assert raw["compute_capability"] == "8.6" and raw["plan_sha256"] == sha256_file(result.plan)
    assert raw["config"] == "tiny" and raw["precision"] == "int8"


def test_fp16_flag_is_refused_on_tensorrt_11_and_on_int8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="strongly typed .* grm-export --config tiny --fp16 --engine"):
        _build(tmp_path, "fp32", TRT11, fp16=True)
    with pytest.raises(ConfigError, match="INT8 Q/DQ model is built with the precision its graph states"):
        _build(tmp_path, "int8", TRT10, fp16=True)
    assert not (tmp_path / "e.plan").exists()


def test_old_tensorrt_and_unknown_precision_are_refused() -> None:
    with pytest.raises(BackendUnavailableError, match="TensorRT 8.6.1 is too old"):
        plan_build(make_trt(version="8.6.1"), "fp32", False, "tiny")
    with pytest.raises(ArtifactMismatchError, match="precision 'bf16'; engines are built from fp32, fp16, int8"):
        plan_build(make_trt(version=TRT11), "bf16", False, "tiny")


def test_parser_errors_logged_one_per_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    trt = make_trt(version=TRT10, parse_ok=False)
    with pytest.raises(ArtifactMismatchError, match="could not parse .*: 2 error\\(s\\), first: In node 0"):
        build_engine(_onnx(tmp_path, "fp32"), tmp_path / "e.plan", trt=trt, gpu=lambda: GPU)
    assert [r.getMessage() for r in caplog.records] == [
        "TensorRT ONNX parser: In node 0 (importFoo): UNSUPPORTED_NODE: op 0 not supported",
        "TensorRT ONNX parser: In node 1 (importFoo): UNSUPPORTED_NODE: op 1 not supported",
    ]


def test_failed_build_and_bad_workspace(tmp_path: Path) -> None:
    onnx_path = _onnx(tmp_path, "fp32")
    with pytest.raises(ArtifactMismatchError, match="could not build an engine"):
        build_engine(onnx_path, tmp_path / "e.plan", trt=make_trt(version=TRT10, fail_build=True), gpu=lambda: GPU)
    with pytest.raises(ConfigError, match="workspace 0 bytes must be positive"):
        build_engine(onnx_path, tmp_path / "e.plan", workspace_bytes=0, trt=make_trt(version=TRT10), gpu=lambda: GPU)
    assert not (tmp_path / "e.plan").exists()


def test_onnx_without_grm_metadata_is_refused(tmp_path: Path) -> None:
    path = build_model(tmp_path / "plain.onnx", with_metadata=False)
    with pytest.raises(ArtifactMismatchError, match="not a grm-tracker export"):
        build_engine(path, tmp_path / "e.plan", trt=make_trt(version=TRT10), gpu=lambda: GPU)


# ------------------------------------------------------------------------------------------ timing cache


def _cached_build(tmp_path: Path, cache_bytes: bytes | None, version: str = TRT10):
    cache = tmp_path / "trt.cache"
    if cache_bytes is not None:
        cache.write_bytes(cache_bytes)
    trt, result = _build(tmp_path, "fp32", version, timing_cache=cache)
    return trt, result, cache


def test_timing_cache_is_loaded_and_saved(tmp_path: Path) -> None:
    trt, result, cache = _cached_build(tmp_path, b"TC|10.13.0.35|NVIDIA Fake GPU|5")
    assert trt.state.cache_in == [b"TC|10.13.0.35|NVIDIA Fake GPU|5"]
    assert cache.read_bytes() == b"TC|10.13.0.35|NVIDIA Fake GPU|6"  # the build added its timings


def test_new_timing_cache_is_created(tmp_path: Path) -> None:
    _, _, cache = _cached_build(tmp_path, None, version=TRT11)
    assert cache.read_bytes() == b"TC|11.4.0.106|NVIDIA Fake GPU|1"


@pytest.mark.parametrize("stale", [b"TC|10.8.0.43|NVIDIA Fake GPU|7", b"TC|10.13.0.35|NVIDIA Other GPU|7", b"junk"])
def test_rejected_timing_cache_is_replaced_and_the_manifest_written(tmp_path: Path, caplog, stale: bytes) -> None:
    """set_timing_cache returns False for another TensorRT or GPU (create_timing_cache None for junk); then
    get_timing_cache would be None. The build must go on with a fresh cache, and write the manifest."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    trt, result, cache = _cached_build(tmp_path, stale)
    assert trt.state.errors  # TensorRT said no
    assert read_manifest(result.plan).plan_sha256 == sha256_file(result.plan)
    assert cache.read_bytes() == b"TC|10.13.0.35|NVIDIA Fake GPU|1"
    assert "was rejected by TensorRT" in caplog.text


def test_unsavable_timing_cache_still_leaves_plan_and_manifest(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    cache = tmp_path / "cache-is-a-folder"
    cache.mkdir()
    trt, result = _build(tmp_path, "int8", TRT11, timing_cache=cache)
    assert read_manifest(result.plan).metadata.precision == "int8"
    assert "cannot write timing cache" in caplog.text and cache.is_dir()


def test_missing_timing_cache_after_build_is_a_warning(tmp_path: Path, caplog, monkeypatch) -> None:
    """get_timing_cache() may return None (no cache attached); nothing is written, the plan stands."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    trt = make_trt(version=TRT10)
    real_builder = trt.Builder

    class NoCacheBuilder(real_builder):
        def create_builder_config(self):
            config = super().create_builder_config()
            config.get_timing_cache = lambda: None
            return config

    trt.Builder = NoCacheBuilder
    cache = tmp_path / "trt.cache"
    result = build_engine(_onnx(tmp_path, "fp32"), tmp_path / "e.plan", timing_cache=cache, trt=trt, gpu=lambda: GPU)
    assert read_manifest(result.plan) and not cache.exists()
    assert "no timing cache to save" in caplog.text


# ------------------------------------------------------------------------------------- packages and GPU


def test_missing_tensorrt_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="needs the tensorrt package .*pip install tensorrt 'cuda-python"):
        import_tensorrt()


def test_gpu_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", FakeCudart(gpu_name="NVIDIA H200", capability=(9, 0)))
    assert gpu_info() == ("NVIDIA H200", (9, 0))


def test_missing_gpu_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    no_driver = FakeCudart()
    no_driver.cudaGetDeviceProperties = lambda device: (CudaError.cudaErrorInsufficientDriver, None)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", no_driver)
    with pytest.raises(BackendUnavailableError, match="no usable NVIDIA GPU: .*cudaErrorInsufficientDriver"):
        gpu_info()
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(BackendUnavailableError, match="finding the GPU needs cuda-python: pip install 'cuda-python>="):
        gpu_info()
