"""Fixtures for the training tests: small generated GOT-10k-layout data, one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from grm.train.data.synth import SynthSpec, write_dataset

SMALL = SynthSpec(min_frames=24, max_frames=30, min_size=160, max_size=200, min_target=20, max_target=40)


@pytest.fixture(autouse=True)
def _one_thread():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four generated training sequences; returns the folder holding list.txt."""
    return write_dataset(tmp_path_factory.mktemp("synth"), 4, seed=3, spec=SMALL)
