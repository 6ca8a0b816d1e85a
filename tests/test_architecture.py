"""Dependency direction between the grm packages, checked on the source (AST scan).

The graph (also in the README's package table): runtime <- benchmarks <- {calibration, train} <- export.
runtime imports no other grm package; export sits on top and may import all four. Imports hidden in strings
(``importlib.import_module``, code handed to ``python -c``) count as imports, and so does probing another grm package
with ``find_spec``; probing for an optional third-party package (``find_spec("torch")``) does not import it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# package folder -> grm packages it may import
ALLOWED = {
    "runtime": {"runtime"},
    "benchmarks": {"runtime", "benchmarks"},
    "calibration": {"runtime", "benchmarks", "calibration"},
    "train": {"runtime", "benchmarks", "train"},
    "export": {"runtime", "benchmarks", "calibration", "train", "export"},
}
TORCH_FREE = {"runtime", "calibration", "benchmarks"}
DYNAMIC_IMPORTERS = {"import_module", "__import__"}
PROBES = {"find_spec"}
# an import statement inside a string: code for ``python -c`` or exec
CODE_IMPORT = re.compile(r"(?:^|[;\n]|\s)(?:from|import)\s+(grm(?:\.\w+)+)")


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the string nodes that are docstrings (their examples are not imports)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = _docstrings(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and _called_name(node) in DYNAMIC_IMPORTERS | PROBES and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if _called_name(node) in DYNAMIC_IMPORTERS or arg.value.startswith("grm."):
                    names.add(arg.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            names.update(CODE_IMPORT.findall(node.value))
    return names


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


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


@pytest.mark.parametrize(
    "source, found",
    [
        ("from grm.export.tensorrt_build import build_engine", {"grm.export.tensorrt_build"}),
        ("import importlib\nimportlib.util.find_spec('grm.export')", {"importlib", "grm.export"}),
        ("importlib.import_module('grm.train.model')", {"grm.train.model"}),
        ("importlib.util.find_spec('torch')", set()),
        ("CODE = 'import sys; from grm.train import x; x()'", {"grm.train"}),
        ('"""Example: from grm.train import load_checkpoint."""', set()),
    ],
)
def test_import_scan_sees_hidden_imports(tmp_path, source, found):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert _imports(path) == found


def test_no_sys_path_edits():
    offenders = [
        str(p.relative_to(REPO))
        for pkg in ALLOWED
        for p in (REPO / pkg).rglob("*.py")
        if "sys.path.insert" in p.read_text() or "sys.path.append" in p.read_text()
    ]
    assert not offenders
