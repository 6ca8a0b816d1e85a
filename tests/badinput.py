"""Harness of the bad-input suites: run a CLI on a bad command line and check what a user would see.

Every case asserts the exit status, that standard error holds exactly one line and no traceback, that the files
that existed before are byte-identical afterwards, and that no partial output (``*.partial*`` temporary files, or
any new file the case does not allow) is left behind.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


def run_process(prog: str, argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None,
                interrupt_after: float | None = None, timeout: float = 300) -> Outcome:
    """Run ``python -m <module of prog>`` as a real process; with ``interrupt_after``, send SIGINT (Ctrl-C) then."""
    command = [sys.executable, "-c", f"import {PROGRAMS[prog]} as m; m.main()", *argv]
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(command, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
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
