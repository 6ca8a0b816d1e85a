"""Ctrl-C (SIGINT) handling for long commands that must stop at a safe point or clean up what they started.

:class:`InterruptWatch` records every signal it receives, so that an interrupt a library swallowed or wrapped
into its own exception (the dynamo ONNX exporter turns a KeyboardInterrupt into a ``TorchExportError``) is still
seen afterwards: a signal is never ignored. In ``defer`` mode the first signal only sets the flag, so a training
step finishes and is saved; the same signal again raises :class:`KeyboardInterrupt` at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import Any, TypeVar

E = TypeVar("E", bound=BaseException)


class InterruptWatch:
    """Context manager installing a handler for ``signals`` (main thread only; elsewhere it watches nothing).

    Args:
        defer: True: the first signal only sets :attr:`requested`; False: every signal also raises
            KeyboardInterrupt, like Python's default handler.
        signals: the signals to watch (SIGINT; training adds SIGTERM, which ``torchrun`` sends its ranks).
    """

    def __init__(self, defer: bool = False, signals: Sequence[int] = (signal.SIGINT,)) -> None:
        self.defer = defer
        self.signals = tuple(signals)
        self.requested = False
        self._seen: set[int] = set()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> InterruptWatch:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        repeated = signum in self._seen  # Ctrl-C then torchrun's SIGTERM is one request, Ctrl-C twice is "now"
        self._seen.add(signum)
        self.requested = True
        if repeated or not self.defer:
            raise KeyboardInterrupt


def find_cause(error: BaseException, kind: type[E]) -> E | None:
    """``error`` itself or the first exception it wraps (``__cause__``, else ``__context__``) that is a ``kind``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def caused_by_interrupt(error: BaseException) -> bool:
    """Whether ``error`` is a KeyboardInterrupt or wraps one (libraries wrap it in their own exceptions)."""
    return find_cause(error, KeyboardInterrupt) is not None


def interrupted_by(watch: InterruptWatch, error: BaseException) -> bool:
    """Whether ``error`` should count as Ctrl-C: the watch saw a signal, or the error wraps a KeyboardInterrupt."""
    return watch.requested or caused_by_interrupt(error)
