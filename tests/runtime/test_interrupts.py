"""Ctrl-C watching (runtime.interrupts), output-error wording (cliapp.writing) and scratch files (runtime.atomic)."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from grm.runtime.atomic import scratch_files, scratch_path_for
from grm.runtime.cliapp import writing
from grm.runtime.errors import InputError, OutputError
from grm.runtime.interrupts import InterruptWatch, caused_by_interrupt, find_cause, interrupted_by


def _press(sig: int = signal.SIGINT) -> None:
    os.kill(os.getpid(), sig)


def test_deferred_watch_sets_the_flag_and_a_repeat_stops_at_once() -> None:
    with InterruptWatch(defer=True, signals=(signal.SIGINT, signal.SIGTERM)) as watch:
        _press()
        assert watch.requested
        _press(signal.SIGTERM)  # torchrun's SIGTERM after the terminal's Ctrl-C: still the same request
        with pytest.raises(KeyboardInterrupt):
            _press()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_immediate_watch_raises_and_remembers() -> None:
    with InterruptWatch() as watch:
        try:
            _press()
        except KeyboardInterrupt:
            pass  # a library swallowing it
        assert watch.requested and interrupted_by(watch, RuntimeError("unrelated"))


def test_wrapped_interrupts_and_causes_are_found() -> None:
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise RuntimeError("Failed to export the model; report a bug to PyTorch") from e
    except RuntimeError as wrapped:
        assert caused_by_interrupt(wrapped)
    disk = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise disk
        except OSError:
            raise RuntimeError("export failed")  # noqa: B904 - implicit context, as libraries do
    except RuntimeError as e:
        assert find_cause(e, OSError) is disk and not caused_by_interrupt(e)


def test_writing_names_the_target_not_the_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    with pytest.raises(OutputError, match=f"cannot write {target}: no space left on the device$"):
        with writing(target):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".m.x.partial.onnx"))
    with pytest.raises(OutputError, match="Read-only file system"):
        with writing(target):
            raise RuntimeError("wrapped") from OSError(errno.EROFS, os.strerror(errno.EROFS))
    with pytest.raises(InputError):  # a user error that happens to follow an OSError keeps its own message
        with writing(target):
            try:
                raise OSError(errno.ENOENT, "gone")
            except OSError:
                raise InputError("bad box") from None


def test_scratch_files_are_removed_and_streams_get_theirs_elsewhere(tmp_path: Path) -> None:
    with scratch_files() as scratch:
        beside = scratch_path_for(tmp_path / "sub" / "m.onnx")
        stream = scratch_path_for(Path("/dev/null"))
        scratch += [beside, stream]
        assert beside.parent == tmp_path / "sub" and ".partial" in beside.name and beside.suffix == ".onnx"
        assert stream.parent != Path("/dev") and stream.is_file()
    assert not beside.exists() and not stream.exists()
