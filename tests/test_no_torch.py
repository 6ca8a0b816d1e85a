"""The runtime, calibration and benchmark packages never import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

TORCH_FREE = ["grm.runtime", "grm.runtime.tracker", "grm.runtime.backends", "grm.calibration", "grm.benchmarks"]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_imports_with_torch_blocked(module):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        f"import importlib; importlib.import_module({module!r})\n"
        "assert sys.modules.get('torch') is None\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
