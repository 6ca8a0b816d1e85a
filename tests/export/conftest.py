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
