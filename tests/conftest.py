"""Locations of test data.

The conformance fixture (official outputs on the tiny config) ships in tests/data/upstream_tiny, so the model and
tracker conformance tests run on any clone. Real sequences and full-size reference files live in ../shared
(``GRM_SHARED_DIR`` overrides the location); tests that need them skip with the path they looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GRM_SHARED_DIR", REPO.parent / "shared"))
UPSTREAM_TINY = REPO / "tests" / "data" / "upstream_tiny"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"reference material not found at {SHARED} (set GRM_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def upstream_tiny() -> Path:
    """The bundled fixture folder; missing files are a broken checkout, so this fails rather than skips."""
    assert (UPSTREAM_TINY / "GRM_ep0001.pth.tar").is_file(), f"conformance fixture missing from {UPSTREAM_TINY}"
    return UPSTREAM_TINY


@pytest.fixture(scope="session")
def real_sequences(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "sequences"
    if not path.is_dir():
        pytest.skip(f"real sequences not found at {path}")
    return path
