"""The error boundary every grm console script runs inside: one line per failure, documented exit codes.

Exit status (the same for all five commands):

- 0: done.
- 1: a quality gate failed (export parity, ``grm-calibrate --max-auc-drop``); the result is kept under a name
  that says so, next to its report.
- 2: bad input: a missing or corrupt file, an invalid option, an output that cannot be written (read-only or
  full file system, no permission, a folder in the way), a missing optional package.
- 3: an internal error (a bug): one line, and the traceback with ``--debug`` or ``GRM_DEBUG=1``.
- 130: interrupted (Ctrl-C); the line says what was kept and how to continue.

A command's failure is always one line on standard error, ``<prog>: error: <message>``; ``--debug`` anywhere on
the command line (or ``GRM_DEBUG=1``) shows the full traceback instead.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import typer
import typer.main
from tqdm import tqdm

from grm.runtime.errors import GrmError, Interrupted, OutputError, os_error_cause
from grm.runtime.interrupts import find_cause

try:  # Typer 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # older Typer on top of click 8.2+
    from click.exceptions import ClickException, NoArgsIsHelpError  # type: ignore[no-redef]

EXIT_OK = 0
EXIT_GATE = 1
EXIT_INPUT = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130
DEBUG_FLAG = "--debug"
DEBUG_ENV = "GRM_DEBUG"


@dataclass(frozen=True)
class Needs:
    """An importable module a command cannot start without, and the extra that installs it."""

    module: str
    extra: str

    def install_hint(self) -> str:
        return f'pip install "grm-tracker[{self.extra}]"'


def missing(needs: Sequence[Needs]) -> list[Needs]:
    """The entries of ``needs`` whose module cannot be imported (looked up, not imported: cheap)."""
    return [need for need in needs if importlib.util.find_spec(need.module) is None]


def one_line(text: str) -> str:
    """Collapse a message onto one line (click and library errors may span several)."""
    return " ".join(str(text).split())


def describe_os_error(error: OSError) -> str:
    """``PATH: cause`` for an OSError from a file operation (both paths for a rename)."""
    cause = os_error_cause(error)
    names = [str(n) for n in (error.filename, error.filename2) if n is not None]
    return f"{' -> '.join(names)}: {cause}" if names else cause


def run_cli(
    prog: str,
    load_app: Callable[[], typer.Typer],
    argv: Sequence[str] | None = None,
    needs: Sequence[Needs] = (),
) -> NoReturn:
    """Run a Typer app as the console script ``prog`` and exit with the documented status.

    ``load_app`` imports the command module only after ``needs`` are checked, so that a missing extra is one
    line naming the install command, for ``--help`` too.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [a for a in args if a != DEBUG_FLAG]
    sys.exit(_run(prog, load_app, args, needs, debug))


def _run(prog: str, load_app: Callable[[], typer.Typer], args: list[str], needs: Sequence[Needs], debug: bool) -> int:
    absent = missing(needs)
    if absent:
        modules = ", ".join(n.module for n in absent)
        verb = "is" if len(absent) == 1 else "are"
        return _fail(prog, f"{prog} needs {modules}, which {verb} not installed: {absent[0].install_hint()}")
    try:
        command = typer.main.get_command(load_app())
        with command.make_context(prog, args) as ctx:
            command.invoke(ctx)
        return EXIT_OK
    except typer.Exit as e:
        return e.exit_code
    except NoArgsIsHelpError as e:
        typer.echo(e.ctx.get_help() if e.ctx else str(e))
        return EXIT_INPUT
    except ClickException as e:
        return _fail(prog, f"{one_line(e.format_message())} (see '{prog} --help')", e.exit_code or EXIT_INPUT)
    except (KeyboardInterrupt, typer.Abort):
        if debug:
            raise
        typer.echo(f"{prog}: interrupted: nothing was completed; run the command again", err=True)
        return EXIT_INTERRUPTED
    except Interrupted as e:
        if debug:
            raise
        typer.echo(f"{prog}: interrupted: {one_line(str(e))}", err=True)
        return EXIT_INTERRUPTED
    except GrmError as e:
        if debug:
            raise
        return _fail(prog, one_line(str(e)))
    except OSError as e:
        if debug:
            raise
        if e.errno == errno.EPIPE:  # the reader of our standard output went away (| head): not an error
            _silence_stdout()
            return EXIT_OK
        return _fail(prog, describe_os_error(e))
    except MemoryError:
        if debug:
            raise
        return _fail(prog, "out of memory; use a smaller batch, fewer workers or a smaller model")
    except Exception as e:  # noqa: BLE001 - the boundary: a bug becomes one line, --debug shows the traceback
        if debug:
            raise
        message = f"internal error ({type(e).__name__}: {one_line(str(e))}); run again with --debug for the traceback"
        return _fail(prog, message, EXIT_BUG)


def _fail(prog: str, message: str, code: int = EXIT_INPUT) -> int:
    typer.echo(f"{prog}: error: {message}", err=True)
    return code


def _silence_stdout() -> None:
    """Point standard output at /dev/null so that the interpreter's final flush raises nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


class _AboveBars(logging.StreamHandler):
    """A stream handler that writes each record above any tqdm bar (bars cleared, line written and flushed at
    once, also into a pipe, bars redrawn), whichever of standard output and error the two go to."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # noqa: BLE001 - logging's own policy for a failing handler
            self.handleError(record)


@contextmanager
def stderr_logging(
    prog: str, level: int = logging.WARNING, fmt: str | None = None, notes_to_stdout: bool = False
) -> Iterator[None]:
    """For one command, send the ``grm`` loggers' records to standard error (``<prog>: <level>: <message>``, above
    any tqdm bar); the handler is removed afterwards, so repeated in-process runs (tests) never stack handlers or
    write to a stream that has gone.

    ``notes_to_stdout``: records below WARNING (progress notes of a long run, with ``level`` INFO) go to standard
    output instead, as plain ``<prog>: <message>`` lines (unless ``fmt`` is given), so that standard error holds
    only warnings and the one-line error. Every record is flushed as it is written, also into a pipe.
    """
    logger = logging.getLogger("grm")
    formatter = logging.Formatter(fmt or f"{prog}: %(levelname)s: %(message)s")
    handlers = [_AboveBars(sys.stderr)]
    if notes_to_stdout:
        handlers[0].setLevel(logging.WARNING)
        handlers.append(_AboveBars(sys.stdout))
        handlers[1].addFilter(lambda record: record.levelno < logging.WARNING)
    previous, propagates = logger.level, logger.propagate
    logger.propagate = False  # a library's logging.basicConfig() must not print every record a second time
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    if notes_to_stdout and fmt is None:
        handlers[1].setFormatter(logging.Formatter(f"{prog}: %(message)s"))
    logger.setLevel(level)
    try:
        yield
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(previous)
        logger.propagate = propagates


@contextmanager
def writing(target: str | Path) -> Iterator[None]:
    """Report an OSError while writing ``target`` (read-only or full file system, ...) as one OutputError.

    Also when a library wrapped it in its own exception (the ONNX exporter's TorchExportError). The message names
    ``target``, not the temporary file beside it that was being written.
    """
    try:
        yield
    except Exception as e:
        cause = find_cause(e, OSError)
        if cause is None or isinstance(e, GrmError):
            raise
        bare = OSError(cause.errno, cause.strerror) if cause.errno is not None else cause  # not the temporary name
        raise OutputError(f"cannot write {target}: {describe_os_error(bare)}") from e
