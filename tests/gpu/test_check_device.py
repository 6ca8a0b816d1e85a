"""The device check's own logic, on the CPU: it passes identical backends and catches a stale-input one."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from grm.runtime.backends import open_model

from . import check_device

FRAMES = 8


@pytest.fixture(scope="module")
def sequence() -> tuple[np.ndarray, np.ndarray]:
    frames, gt = check_device.fixture_sequence()
    return frames[:FRAMES], gt[:FRAMES]


def test_identical_backends_pass(sequence) -> None:
    result = check_device.compare(check_device.DEMO_MODEL, "onnxruntime", "ort-cpu", *sequence)
    assert result.frames == FRAMES - 1
    assert result.map_error == 0.0 and result.box_error == 0.0 and result.mean_iou == pytest.approx(1.0)
    assert not result.failures(check_device.Tolerance(maps=1e-6, box_px=0.0, mean_iou=1.0 - 1e-9))


class _Stale:
    """What a GPU session bound once would do: every frame answers with the first frame's outputs."""

    def __init__(self, backend) -> None:
        self.backend, self.metadata, self.name = backend, backend.metadata, "stale"
        self.first = None

    def run(self, inputs):
        if self.first is None:
            self.first = self.backend.run(inputs)
        return {k: v.copy() for k, v in self.first.items()}

    def close(self) -> None:
        self.backend.close()


def test_stale_inputs_are_caught(sequence, monkeypatch: pytest.MonkeyPatch) -> None:
    def opener(path, backend):
        real = open_model(path, backend="onnxruntime")
        return _Stale(real) if backend == "stale" else real

    monkeypatch.setattr(check_device, "open_model", opener)
    result = check_device.compare(check_device.DEMO_MODEL, "onnxruntime", "stale", *sequence)
    failures = result.failures(check_device.Tolerance(maps=2e-2, box_px=1.0, mean_iou=0.98))
    assert result.map_error > 2e-2 and any("output maps differ" in f for f in failures)


def test_tensorrt_check_skips_without_tensorrt(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert check_device.main(["tensorrt"]) == check_device.SKIP
    assert capsys.readouterr().out.startswith("SKIP tensorrt is not installed")
