"""Fixtures for runtime tests: fake grm ONNX models and small generated clips (see runtime_fakes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .runtime_fakes import build_model, square_frames, write_folder, write_video


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def fake_onnx(model_dir: Path) -> Path:
    """Brightness-tracker ONNX with tiny-config metadata."""
    return build_model(model_dir / "fake_tiny.onnx")


@pytest.fixture(scope="session")
def fake_onnx_decisions(model_dir: Path) -> Path:
    """Same model plus the ``decisions`` output (division masks)."""
    return build_model(model_dir / "fake_tiny_decisions.onnx", decisions=True)


@pytest.fixture(scope="session")
def nan_onnx(model_dir: Path) -> Path:
    """A model whose offset map is NaN."""
    return build_model(model_dir / "fake_nan.onnx", nan=True)


@pytest.fixture(scope="session")
def clip_frames():
    return square_frames(12)


@pytest.fixture(scope="session")
def clip_video(tmp_path_factory: pytest.TempPathFactory, clip_frames) -> Path:
    """12-frame .avi (MJPG) of a white square moving right by 2 px per frame."""
    return write_video(tmp_path_factory.mktemp("video") / "square.avi", clip_frames[0])


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory: pytest.TempPathFactory, clip_frames) -> Path:
    """The same 12 frames as 1.png .. 12.png."""
    return write_folder(tmp_path_factory.mktemp("frames") / "seq", clip_frames[0])
