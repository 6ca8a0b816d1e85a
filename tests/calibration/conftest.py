"""Calibration fixtures: the tiny fixture model exported once per session, short real and synthetic sequences.

Exporting and quantising cost seconds, so both happen once per session; tests that change files copy them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_onnx(upstream_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FP32 export of the upstream_tiny checkpoint with the ``decisions`` output.

    Built with the TorchScript exporter around the export package's static model (about 1 s, where the full
    dynamo export with its checks takes far longer); the metadata is the export package's own.
    """
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    import onnx

    from grm.export.metadata import build_metadata, write_metadata
    from grm.export.static_model import StaticGrm
    from grm.runtime import contract
    from grm.runtime.atomic import sha256_file as file_sha256
    from grm.train.checkpoint import load_checkpoint

    checkpoint = upstream_tiny / "GRM_ep0001.pth.tar"
    model = load_checkpoint(checkpoint, "tiny")
    shapes = contract.input_shapes(model.config.tracker)
    inputs = tuple(torch.zeros(shapes[name]) for name in contract.INPUT_NAMES)
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    outputs = [*contract.OUTPUT_NAMES, contract.DECISIONS]
    static = StaticGrm(model, with_decisions=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript exporter: retirement notice and tracer warnings
        torch.onnx.export(static, inputs, str(path), input_names=list(contract.INPUT_NAMES), output_names=outputs,
                          opset_version=17, dynamo=False)  # fmt: skip
    proto = onnx.load(str(path))
    meta = build_metadata(model.config, precision="fp32", opset=17, checkpoint_sha256=file_sha256(checkpoint),
                          outputs_masks=True)  # fmt: skip
    write_metadata(proto, meta)
    onnx.save(proto, str(path))
    return path


def write_sequence(folder: Path, frames_rgb: np.ndarray, boxes: np.ndarray) -> Path:
    """An OTB-layout sequence: img/0001.png ... and groundtruth_rect.txt (x,y,w,h per line)."""
    (folder / "img").mkdir(parents=True)
    for i, frame in enumerate(frames_rgb, start=1):
        cv2.imwrite(str(folder / "img" / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    np.savetxt(folder / "groundtruth_rect.txt", boxes, fmt="%.2f", delimiter=",")
    return folder


@pytest.fixture(scope="session")
def synth_root(upstream_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 20-frame sequences cut from the fixture's synthetic sequence, which the tiny model tracks well."""
    with np.load(upstream_tiny / "sequence.npz") as data:
        frames, gt = data["frames"], data["gt"]
    root = tmp_path_factory.mktemp("synth")
    write_sequence(root / "synthA", frames[:20], gt[:20])
    write_sequence(root / "synthB", frames[20:], gt[20:])
    return root


@pytest.fixture(scope="session")
def calib_set(tiny_onnx: Path, synth_root: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """16 crops from synthA, collected once (cached in a session folder)."""
    from grm.calibration.collect import load_or_collect
    from grm.calibration.sequences import discover
    from grm.runtime.atomic import sha256_file as file_sha256
    from grm.runtime.backends import open_model

    backend = open_model(tiny_onnx, backend="onnxruntime", threads=1)
    sequences = [s for s in discover([synth_root]) if s.name == "synthA"]
    calib, _ = load_or_collect(
        backend, sequences, samples=16, threshold=0.0, model_sha256=file_sha256(tiny_onnx),
        cache_dir=tmp_path_factory.mktemp("cache"),
    )  # fmt: skip
    return calib


@pytest.fixture(scope="session")
def tiny_int8(tiny_onnx: Path, calib_set, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """The default-settings INT8 model of the tiny export (QuantizeResult)."""
    from grm.calibration.quantize import quantize

    return quantize(tiny_onnx, calib_set, tmp_path_factory.mktemp("int8") / "tiny_int8.onnx")
