"""The shared CLI boundary (runtime/cliapp.py) and in-place writes of special targets (runtime/atomic.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import typer

from grm.runtime.atomic import atomic_path, atomic_write_text, is_stream
from grm.runtime.cliapp import EXIT_BUG, EXIT_INPUT, EXIT_INTERRUPTED, Needs, describe_os_error, run_cli
from grm.runtime.errors import InputError, Interrupted


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command()
    def go(n: int = typer.Option(1, min=1), what: str = "ok", out: Path | None = None) -> None:
        if what == "input":
            raise InputError("the box 1,2,3 needs four numbers")
        if what == "oserror":
            raise OSError(errno.EROFS, "Read-only file system", "/ro/model.onnx")
        if what == "bug":
            raise KeyError("k")
        if what == "ctrl-c":
            raise KeyboardInterrupt
        if what == "interrupted":
            raise Interrupted("kept 12 frames in boxes.txt")
        if out is not None:
            atomic_write_text(out, "x\n")
        typer.echo(f"done {n}")

    return app


def _call(capsys: pytest.CaptureFixture[str], *args: str, needs: tuple[Needs, ...] = ()) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("grm-x", _app, list(args), needs=needs)
    out, err = capsys.readouterr()
    return int(exit_info.value.code), out, err


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("--n", "0"), EXIT_INPUT, "grm-x: error: Invalid value for '--n'"),
        (("--bogus",), EXIT_INPUT, "No such option: --bogus"),
        (("--what", "input"), EXIT_INPUT, "grm-x: error: the box 1,2,3 needs four numbers"),
        (("--what", "oserror"), EXIT_INPUT, "grm-x: error: /ro/model.onnx: Read-only file system"),
        (("--what", "bug"), EXIT_BUG, "internal error (KeyError"),
        (("--what", "ctrl-c"), EXIT_INTERRUPTED, "grm-x: interrupted: nothing was completed"),
        (("--what", "interrupted"), EXIT_INTERRUPTED, "grm-x: interrupted: kept 12 frames in boxes.txt"),
        (("--out", "/dev/full"), EXIT_INPUT, "/dev/full: no space left on the device"),
    ],
)
def test_failures_are_one_line(capsys, args, code, text):
    exit_code, _, err = _call(capsys, *args)
    assert exit_code == code
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert text in err


def test_success_and_help(capsys):
    assert _call(capsys, "--n", "3")[:2] == (0, "done 3\n")
    code, out, _ = _call(capsys, "--help")
    assert code == 0 and "--what" in out


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(KeyError):
        run_cli("grm-x", _app, ["--what", "bug", "--debug"])


def test_missing_extra_is_named_before_the_app_is_loaded(capsys):
    def never() -> typer.Typer:
        raise AssertionError("the app must not be imported when an extra is missing")

    with pytest.raises(SystemExit) as exit_info:
        run_cli("grm-x", never, ["--help"], needs=(Needs("json", "x"), Needs("no_such_module_grm", "export")))
    err = capsys.readouterr().err
    assert exit_info.value.code == EXIT_INPUT
    assert err.strip() == (
        'grm-x: error: grm-x needs no_such_module_grm, which is not installed: pip install "grm-tracker[export]"'
    )
    with pytest.raises(SystemExit):
        run_cli("grm-x", never, [], needs=(Needs("no_such_a_grm", "export"), Needs("no_such_b_grm", "export")))
    assert "needs no_such_a_grm, no_such_b_grm, which are not installed" in capsys.readouterr().err


def test_os_error_names_both_paths():
    error = OSError(errno.EXDEV, "Invalid cross-device link")
    error.filename, error.filename2 = "/a/tmp", "/b/out"
    assert describe_os_error(error) == "/a/tmp -> /b/out: Invalid cross-device link"


def test_stdout_target(capfd):
    assert is_stream("-")
    atomic_write_text("-", "1,2,3,4\n")
    assert capfd.readouterr().out == "1,2,3,4\n"


def test_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert is_stream(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with atomic_path(fifo) as tmp:
            tmp.write_bytes(b"boxes\n")
        assert os.read(reader, 100) == b"boxes\n"
    finally:
        os.close(reader)
    assert fifo.exists() and not fifo.is_file()
    assert list(tmp_path.iterdir()) == [fifo]


def test_symlink_to_device_is_not_replaced(tmp_path):
    link = tmp_path / "sink"
    link.symlink_to("/dev/null")
    atomic_write_text(link, "data\n")
    assert link.is_symlink() and os.readlink(link) == "/dev/null"


def test_dev_full_raises_enospc():
    with pytest.raises(OSError) as info:
        atomic_write_text("/dev/full", "x" * 10)
    assert info.value.errno == errno.ENOSPC


def test_regular_file_stays_atomic(tmp_path):
    target = tmp_path / "boxes.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("stopped")
    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]
