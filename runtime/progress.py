"""What a long grm command shows while it works and when it is done.

While it works: a note per stage as the stage starts (``log.info`` records, which the commands print as plain
``<prog>: <note>`` lines on standard output, flushed line by line), and a tqdm bar per stage that is drawn only
when standard error is a terminal (``disable=None``), so logs and pipes get the notes alone.

When it is done: one ``wrote PATH (what)`` line per file or folder written, then ``next: <command>`` lines
with the command a user would run next. Suggested commands put each path through :func:`shell_word`, so they
can be pasted into a shell as printed.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from types import TracebackType

from tqdm import tqdm


def wrote(path: str | Path, what: str) -> str:
    """The closing line for one output: ``wrote PATH (what)``; a folder keeps a trailing slash."""
    shown = f"{path}/" if Path(path).is_dir() and not str(path).endswith("/") else str(path)
    return f"wrote {shown} ({what})"


def next_step(command: str) -> str:
    """The closing line that suggests what to run next: ``next: <command>``."""
    return f"next: {command}"


def shell_word(path: str | Path) -> str:
    """A path as one shell word (quoted only where the shell needs it)."""
    return shlex.quote(str(path))


def folder_bytes(folder: str | Path) -> int:
    """Bytes of the regular files below ``folder`` (0 when it does not exist)."""
    root = Path(folder)
    if not root.is_dir():
        return 0
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def megabytes(size: int) -> str:
    """``size`` bytes as ``12.3 MB`` (decimal megabytes, as file managers show them)."""
    return f"{size / 1e6:.1f} MB"


class StageBars:
    """One tqdm bar per stage, created on the stage's first report (when its total is known) and drawn only when
    standard error is a terminal; ``disable=True`` never draws (``--no-progress``).

    Stages report either an absolute count (:meth:`reach`) or an increment (:meth:`advance`). Stages run one
    after another: a bar that is full is closed and cleared at once, and a new stage's first report closes the
    bars of the others; the next report of a closed stage (its next sequence) opens a new bar.
    """

    def __init__(self, disable: bool | None = None, unit: str = "it") -> None:
        self.disable = disable
        self.unit = unit
        self.bars: dict[str, tqdm] = {}

    def _bar(self, stage: str, total: int) -> tqdm:
        bar = self.bars.get(stage)
        if bar is None:
            self.close()
            bar = self.bars[stage] = tqdm(
                total=total, desc=stage, unit=self.unit, leave=False, disable=self.disable, dynamic_ncols=True
            )
        return bar

    def reach(self, stage: str, done: int, total: int) -> None:
        """``done`` of ``total`` steps of ``stage`` are finished."""
        bar = self._bar(stage, total)
        self._update(stage, bar, done - bar.n)

    def advance(self, stage: str, steps: int, total: int) -> None:
        """``steps`` more steps of ``stage`` are finished (of ``total``)."""
        self._update(stage, self._bar(stage, total), steps)

    def _update(self, stage: str, bar: tqdm, steps: int) -> None:
        bar.update(steps)
        if not bar.disable and bar.total is not None and bar.n >= bar.total:
            bar.close()
            del self.bars[stage]

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()

    def __enter__(self) -> StageBars:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
