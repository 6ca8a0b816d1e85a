"""Export test fixtures: the tiny fixture checkpoint loaded once, single-threaded torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_checkpoint(upstream_tiny: Path) -> Path:
    return upstream_tiny / "GRM_ep0001.pth.tar"


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint: Path):  # noqa: ANN201 (GRM)
    from grm.train.checkpoint import load_checkpoint

    return load_checkpoint(tiny_checkpoint, "tiny")


@pytest.fixture(scope="session")
def tiny_outputs(upstream_tiny: Path) -> dict[str, np.ndarray]:
    with np.load(upstream_tiny / "model_outputs.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def tiny_fp32_export(tiny_model, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 (OnnxExport)
    """The tiny model exported once in FP32 with the decisions output."""
    from grm.export.to_onnx import export_onnx

    out = tmp_path_factory.mktemp("fp32") / "grm_tiny.onnx"
    return export_onnx(tiny_model, out, with_decisions=True, checkpoint_sha256="ab" * 32)


@pytest.fixture(scope="session")
def tiny_fp16_cli(tiny_checkpoint: Path, real_sequences: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """``grm-export --config tiny --fp16`` run once through the CLI (no decisions output, parity on real crops)."""
    from typer.testing import CliRunner

    from grm.export.cli import app

    out = tmp_path_factory.mktemp("fp16") / "grm_tiny_fp16.onnx"
    args = ["--config", "tiny", "--checkpoint", str(tiny_checkpoint), "--fp16", "--output", str(out)]
    args += ["--parity-data", str(real_sequences), "--threads", "1"]
    return CliRunner().invoke(app, args), out
