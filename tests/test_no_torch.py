"""The runtime, calibration and benchmark packages never import torch, in any of their modules."""

from __future__ import annotations

import subprocess
import sys

import pytest

TORCH_FREE = ["grm.runtime", "grm.calibration", "grm.benchmarks"]


@pytest.mark.parametrize("package", TORCH_FREE)
def test_every_module_imports_with_torch_blocked(package):
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import importlib, pkgutil\n"
        f"pkg = importlib.import_module({package!r})\n"
        "names = [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.')]\n"
        "assert len(names) > 3, names\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "assert sys.modules.get('torch') is None\n"
        "print(len(names))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
