"""grm-run on a real grm export: ONNX Runtime boxes equal the PyTorch checkpoint's on real frames.

Uses the upstream ``tiny`` fixture checkpoint and a real OTB sequence; skips when torch, the export package
or the shared reference material are missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from grm.runtime.cli import app
from grm.runtime.geometry import iou_xywh

FRAMES = 30


@pytest.fixture(scope="module")
def tiny_export(upstream_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("grm.export.to_onnx")
    from grm.export.to_onnx import export_onnx
    from grm.train.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    model = load_checkpoint(upstream_tiny / "GRM_ep0001.pth.tar", "tiny")
    path = tmp_path_factory.mktemp("export") / "tiny.onnx"
    export_onnx(model, path, with_decisions=True)
    return path


def _run(tmp_path: Path, name: str, *args: str | Path) -> np.ndarray:
    res = CliRunner().invoke(
        app,
        [str(a) for a in args]
        + [
            "--threads",
            "1",
            "--max-frames",
            str(FRAMES),
            "--boxes-out",
            str(tmp_path / f"{name}.txt"),
            "--json-out",
            str(tmp_path / f"{name}.json"),
        ],
    )
    assert res.exit_code == 0, res.stderr
    return np.loadtxt(tmp_path / f"{name}.txt", delimiter=",")


def test_onnx_runtime_matches_pytorch_on_real_frames(
    tmp_path: Path, tiny_export: Path, upstream_tiny: Path, real_sequences: Path
) -> None:
    seq = real_sequences / "Crossing"
    box = ",".join(seq.joinpath("groundtruth_rect.txt").read_text().split("\n")[0].replace("\t", ",").split(","))
    ort = _run(
        tmp_path,
        "ort",
        seq / "img",
        "--box",
        box,
        "--model",
        tiny_export,
        "--config",
        "tiny",
        "--video-out",
        tmp_path / "masks.avi",
    )
    ref = _run(
        tmp_path,
        "torch",
        seq / "img",
        "--box",
        box,
        "--model",
        upstream_tiny / "GRM_ep0001.pth.tar",
        "--config",
        "tiny",
        "--backend",
        "torch",
    )
    assert ort.shape == ref.shape == (FRAMES, 4)
    assert iou_xywh(ort, ref).mean() >= 0.999
    summary = json.loads((tmp_path / "ort.json").read_text())
    assert summary["backend"] == "onnxruntime[CPUExecutionProvider]" and summary["tracked"] == FRAMES - 1
    assert (tmp_path / "masks.avi").stat().st_size > 0
