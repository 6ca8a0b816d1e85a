"""Harness of the bad-input suites: run a CLI on a bad command line and check what a user would see.

Every case asserts the exit status, that standard error holds exactly one line and no traceback, that the files
that existed before are byte-identical afterwards, and that no partial output (``*.partial*`` temporary files, or
any new file the case does not allow) is left behind.
"""

from __future__ import annotations

import ast
import errno
import hashlib
import importlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PROGRAMS = {
    "grm-run": "grm.runtime",
    "grm-export": "grm.export",
    "grm-calibrate": "grm.calibration",
    "grm-bench": "grm.benchmarks",
    "grm-train": "grm.train",
}


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    created: list[Path] = field(default_factory=list)


def snapshot(root: Path) -> dict[Path, str]:
    """sha256 of every regular file below ``root`` (symbolic links and devices are not followed)."""
    digests: dict[Path, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            digests[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def run_main(main: Callable[[list[str]], None], argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> Outcome:
    """Call a console script's ``main(argv)`` in this process and return its exit status and output."""
    capsys.readouterr()
    try:
        main(list(argv))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return Outcome(code, out, err)


def run_process(
    prog: str,
    argv: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    interrupt_after: float | None = None,
    timeout: float = 300,
) -> Outcome:
    """Run ``python -m <module of prog>`` as a real process; with ``interrupt_after``, send SIGINT (Ctrl-C) then."""
    command = [sys.executable, "-c", f"import {PROGRAMS[prog]} as m; m.main()", *argv]
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(command, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if interrupt_after is not None:
        time.sleep(interrupt_after)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return Outcome(proc.returncode, out, err)


def check_one_line_failure(outcome: Outcome, code: int, prog: str, must_contain: Iterable[str] = ()) -> str:
    """Assert the exit status and a single ``<prog>: ...`` line on stderr without a traceback; return the line."""
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert outcome.code == code, f"exit {outcome.code}, expected {code}; stderr:\n{outcome.stderr}"
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{outcome.stderr}"
    assert lines[0].startswith(f"{prog}: "), lines[0]
    for text in must_contain:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]


def check_untouched(before: dict[Path, str], root: Path, allowed_new: Iterable[Path] = ()) -> None:
    """Files that existed are byte-identical; no new file appeared except ``allowed_new``; no partial file."""
    after = snapshot(root)
    changed = [p for p, digest in before.items() if after.get(p) != digest]
    allowed = {Path(p) for p in allowed_new}
    new = [p for p in after if p not in before and p not in allowed]
    partial = [p for p in after if ".partial" in p.name]
    assert not changed, f"changed or removed: {changed}"
    assert not new, f"new files left behind: {new}"
    assert not partial, f"partial files left behind: {partial}"


# --- hints: command lines that messages and docs suggest must name real commands and options -------------------

HINT = re.compile(r"\b(grm-(?:run|export|calibrate|bench|train))\b((?: [\w./<>=@+*-]+)*)")
DEFAULT_COMMAND = {"grm-bench": "run"}  # grm-bench --dataset ... means grm-bench run --dataset ...


@dataclass(frozen=True)
class Hint:
    where: str  # file:line
    line: str  # the suggested command line, f-string fields replaced by X


def _string_texts(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every string literal of a module (implicit concatenation joined; f-string fields become ``X``)."""
    inside_fstring = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [v.value if isinstance(v, ast.Constant) else "X" for v in node.values]
            yield node.lineno, "".join(str(p) for p in parts)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inside_fstring:
            yield node.lineno, node.value


def find_hints(root: Path, folders: Sequence[str]) -> list[Hint]:
    """The grm command lines inside the string literals (messages, help texts, docstrings) of ``folders``."""
    hints = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for lineno, text in _string_texts(tree):
                for match in HINT.finditer(text):
                    where = f"{path.relative_to(root)}:{lineno}"
                    hints.append(Hint(where, (match.group(1) + match.group(2)).strip()))
    return hints


def _command_for(prog: str, args: list[str]) -> tuple[Any, list[str]]:
    """The click command a command line reaches (sub-commands resolved) and the arguments left for it."""
    import typer.main

    app = importlib.import_module(f"{PROGRAMS[prog]}.cli").app
    command = typer.main.get_command(app)
    commands = getattr(command, "commands", None)
    if commands:
        if args and args[0] in commands:
            return commands[args[0]], args[1:]
        if prog in DEFAULT_COMMAND and not (args and args[0] in ("--help", "-h")):
            return commands[DEFAULT_COMMAND[prog]], args
    return command, args


def check_hint(hint: Hint) -> None:
    """Each option of a suggested command line exists on the real CLI (sub-commands resolved), and an option that
    takes a value is not followed by another option. Parsed by hand from the click parameters, because click's
    resilient parsing ignores unknown options and a strict parse fails on hints that leave out required ones."""
    prog, *args = hint.line.split()
    command, args = _command_for(prog, args)
    params = {opt: p for p in command.params for opt in (*p.opts, *getattr(p, "secondary_opts", []))}
    for i, arg in enumerate(args):
        if not arg.startswith("-") or arg == "-":
            continue
        name = arg.split("=", 1)[0]
        if name in ("--help", "-h"):
            continue
        assert name in params, f"{hint.where}: '{hint.line}' names {name}, which {prog} {command.name} does not have"
        param = params[name]
        takes_value = not getattr(param, "is_flag", False) and getattr(param, "nargs", 1) != 0 and "=" not in arg
        following = args[i + 1] if i + 1 < len(args) else None  # None: the option is only named ("see --dataset")
        if takes_value and following is not None:
            assert not following.startswith("--"), f"{hint.where}: '{hint.line}' gives {name} no value"


# --- real processes and file systems: missing extras, Ctrl-C at a known step, read-only folders ----------------

_HIDE_MODULES = '''"""Test helper: make the modules named in GRM_TEST_HIDE look uninstalled (find_spec None, import fails)."""
import os
import sys

_HIDDEN = {name for name in os.environ.get("GRM_TEST_HIDE", "").split(",") if name}


class _Hiding:
    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _HIDDEN:
            return None
        find = getattr(self.inner, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attr):
        return getattr(self.inner, attr)


if _HIDDEN:
    sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]
'''


def hide_modules_env(folder: Path, modules: Sequence[str]) -> dict[str, str]:
    """Environment for :func:`run_process` in which ``modules`` look uninstalled, like the README's ``[cpu]``
    environment without torch/onnx: a ``sitecustomize.py`` written to ``folder`` (keep it outside the snapshot root)
    wraps every meta-path finder so that ``importlib.util.find_spec`` returns None for them and imports fail."""
    (folder / "sitecustomize.py").write_text(_HIDE_MODULES, encoding="utf-8")
    paths = [str(folder), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {"PYTHONPATH": os.pathsep.join(paths), "GRM_TEST_HIDE": ",".join(modules)}


_PAUSE = """
import functools, importlib, pathlib, sys, time
module_name, _, attr = sys.argv.pop(1).partition(":")
flag, pause = pathlib.Path(sys.argv.pop(1)), float(sys.argv.pop(1))
owner = importlib.import_module(module_name)
*parents, name = attr.split(".")
for part in parents:
    owner = getattr(owner, part)
original = getattr(owner, name)

@functools.wraps(original)
def paused(*args, **kwargs):
    flag.touch()
    time.sleep(pause)
    return original(*args, **kwargs)

setattr(owner, name, paused)
importlib.import_module(sys.argv.pop(1)).main()
"""


def run_interrupted(
    prog: str,
    argv: Sequence[str],
    cwd: Path,
    at: str,
    env: dict[str, str] | None = None,
    pause: float = 600.0,
    timeout: float = 300,
) -> Outcome:
    """Run ``prog`` as a real process and press Ctrl-C (SIGINT) when it reaches ``at``.

    ``at`` ("module:function" or "module:Class.method", as the caller looks it up) is wrapped to pause ``pause``
    seconds before it runs, so the interrupt lands at a known step rather than at a guessed time. A command that
    stops at once on Ctrl-C is interrupted inside the pause; one that finishes its step first (grm-train) runs it
    after the pause.
    """
    with tempfile.TemporaryDirectory(prefix="grm-reached-") as folder:
        flag = Path(folder) / "reached"
        command = [sys.executable, "-c", _PAUSE, at, str(flag), str(pause), PROGRAMS[prog], *argv]
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        reached = flag.exists()
        if reached:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert reached, f"{prog} never reached {at} (exit {proc.returncode}):\n{err}"
    return Outcome(proc.returncode, out, err)


def _try_mount_read_only(folder: Path) -> bool:
    """Mount an empty read-only tmpfs on ``folder`` (needs root with CAP_SYS_ADMIN); False where not allowed."""
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextmanager
def read_only_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Make the empty ``folder`` read-only for this process and yield how: ``"mount"`` (a read-only tmpfs mounted
    on it, real EROFS from the kernel, used where the machine allows mounting) or ``"injected"`` (these machines run
    as root, which chmod does not stop: every Python-level open/mkdir/rename below ``folder`` raises EROFS)."""
    folder.mkdir(parents=True, exist_ok=True)
    if _try_mount_read_only(folder):
        try:
            yield "mount"
        finally:
            subprocess.run(["umount", str(folder)], capture_output=True, timeout=30, check=False)
        return
    _inject_read_only(folder, monkeypatch)
    yield "injected"


def _inject_read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = os.path.realpath(folder)

    def below(path: Any) -> bool:
        try:
            return os.path.realpath(os.fspath(path)).startswith(root)
        except TypeError:  # a file descriptor
            return False

    def refuse(path: Any) -> OSError:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

    def guard(real: Callable[..., Any], writes: Callable[..., bool]) -> Callable[..., Any]:
        def guarded(path: Any, *args: Any, **kwargs: Any) -> Any:
            if below(path) and writes(*args, **kwargs):
                raise refuse(path)
            return real(path, *args, **kwargs)

        return guarded

    def open_writes(mode: str = "r", *args: Any, **kwargs: Any) -> bool:
        return any(c in str(kwargs.get("mode", mode)) for c in "wax+")

    def os_open_writes(flags: int, *args: Any, **kwargs: Any) -> bool:
        return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))

    import builtins
    import io

    for module, name, writes in (
        (builtins, "open", open_writes),
        (io, "open", open_writes),
        (os, "open", os_open_writes),
        (os, "mkdir", lambda *a, **k: True),
        (os, "replace", lambda *a, **k: True),
        (os, "rename", lambda *a, **k: True),
    ):
        monkeypatch.setattr(module, name, guard(getattr(module, name), writes))


@contextmanager
def tmpfs(
    folder: Path, size: str = "1m", files: dict[str, str] | None = None, read_only: bool = False
) -> Iterator[Path]:
    """A real small file system on ``folder`` (a tmpfs of ``size``, holding ``files``, remounted read-only when
    asked): real ENOSPC and EROFS from the kernel. Skips the test where this machine refuses mounts; the injected
    cases cover those machines."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"mount refused here ({e})")
    if done.returncode != 0:
        pytest.skip(f"mount refused here ({done.stderr.decode().strip()})")
    try:
        for name, text in (files or {}).items():
            (folder / name).write_text(text)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True, timeout=10, check=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True, timeout=30, check=False)
