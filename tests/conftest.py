"""Shared test fixtures: locations of ../shared reference material, skipping cleanly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GRM_SHARED_DIR", REPO.parent / "shared"))
UPSTREAM_TINY = SHARED / "fixtures" / "upstream_tiny"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"reference material not found at {SHARED} (set GRM_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def upstream_tiny(shared_dir: Path) -> Path:
    if not UPSTREAM_TINY.is_dir():
        pytest.skip(f"upstream_tiny fixture not found at {UPSTREAM_TINY}")
    return UPSTREAM_TINY


@pytest.fixture(scope="session")
def real_sequences(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "sequences"
    if not path.is_dir():
        pytest.skip(f"real sequences not found at {path}")
    return path
