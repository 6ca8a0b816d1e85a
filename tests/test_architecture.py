"""Dependency direction between the grm packages, checked on the source (AST scan)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# package folder -> grm packages it may import
ALLOWED = {
    "runtime": {"runtime"},
    "calibration": {"runtime", "calibration", "benchmarks"},
    "benchmarks": {"runtime", "benchmarks"},
    "train": {"runtime", "train", "benchmarks"},
    "export": {"runtime", "train", "export"},
}
TORCH_FREE = {"runtime", "calibration", "benchmarks"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_dependency_direction(package):
    violations = []
    for path in sorted((REPO / package).rglob("*.py")):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "grm" and len(parts) > 1 and parts[1] not in ALLOWED[package]:
                violations.append(f"{path.relative_to(REPO)} imports {name}")
            if package in TORCH_FREE and parts[0] == "torch":
                violations.append(f"{path.relative_to(REPO)} imports torch")
    assert not violations, "\n".join(violations)


def test_no_sys_path_edits():
    offenders = [str(p.relative_to(REPO)) for pkg in ALLOWED for p in (REPO / pkg).rglob("*.py")
                 if "sys.path.insert" in p.read_text() or "sys.path.append" in p.read_text()]
    assert not offenders
