"""The built wheel contains every sub-package and its data files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return next(out.glob("grm_tracker-*.whl"))


def test_every_package_is_listed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = set()
    for top in ("runtime", "train", "export", "calibration", "benchmarks"):
        for init in (REPO / top).rglob("__init__.py"):
            on_disk.add("grm." + init.parent.relative_to(REPO).as_posix().replace("/", "."))
    assert on_disk == listed, f"unlisted: {on_disk - listed}; listed but absent: {listed - on_disk}"


def test_wheel_contains_every_subpackage(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    for package in config["tool"]["setuptools"]["packages"]:
        init = package.replace(".", "/") + "/__init__.py"
        assert init in names, f"{init} missing from {wheel.name}"
    assert "grm/runtime/py.typed" in names
    assert "grm/runtime/assets/demo.onnx" in names, "the README main job needs the bundled demo model"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("grm-run", "grm-export", "grm-calibrate", "grm-bench", "grm-train"):
        assert script in text
