"""The bundled demo model: metadata, and the README's main job tracking the generated clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from grm.runtime.backends import open_model
from grm.runtime.cli import app
from grm.runtime.demo import DEMO_MODEL, demo_clip
from grm.runtime.geometry import iou_xywh


def test_demo_model_describes_itself():
    assert DEMO_MODEL.is_file(), "the package must ship grm/runtime/assets/demo.onnx"
    backend = open_model(DEMO_MODEL, threads=1)
    meta = backend.metadata
    assert meta.config == "tiny" and meta.precision == "fp32"
    assert len(meta.checkpoint_sha256) == 64
    assert DEMO_MODEL.stat().st_size <= 20 * 2**20


def test_main_job_tracks_the_generated_clip(tmp_path: Path):
    boxes_file = tmp_path / "demo_boxes.txt"
    result = CliRunner().invoke(app, ["demo", "--boxes-out", str(boxes_file), "--threads", "1"])
    assert result.exit_code == 0, result.output
    boxes = np.loadtxt(boxes_file, delimiter=",")[:, :4]
    _, truth = demo_clip()
    assert len(boxes) == len(truth)
    iou = iou_xywh(boxes, np.asarray(truth))
    assert iou.mean() > 0.7 and iou.min() > 0.4, f"mean IoU {iou.mean():.3f}, min {iou.min():.3f}"
