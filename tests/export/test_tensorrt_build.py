"""grm-export --engine on a real GPU: export the tiny fixture, build with the runtime's TensorRT builder, verify.

The builder itself (grm.runtime.backends.trt_build) is tested against a fake tensorrt in
tests/runtime/test_trt_build.py; this test skips on machines without tensorrt and an NVIDIA GPU.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from grm.runtime.atomic import sha256_file
from grm.runtime.backends.cuda_memory import gpu_info
from grm.runtime.backends.manifest import read_manifest
from grm.runtime.errors import BackendUnavailableError


def _has_tensorrt_and_gpu() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        gpu_info()
    except BackendUnavailableError:
        return False
    return True


def test_export_builds_with_the_runtime_builder() -> None:
    """grm-export and grm-calibrate share one builder, the runtime's (it needs no torch)."""
    from grm.export import pipeline
    from grm.runtime.backends import trt_build

    assert pipeline.build_engine is trt_build.build_engine and pipeline.import_tensorrt is trt_build.import_tensorrt
    assert not (Path(pipeline.__file__).parent / "tensorrt_build.py").exists()


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
    assert manifest.metadata.precision == "fp32"
    assert all(s.decision_agreement == 1.0 for s in result.engine_report.thresholds)
