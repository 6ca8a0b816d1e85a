"""grm.runtime: the lean GRM tracker (numpy + OpenCV + ONNX Runtime / TensorRT). Never imports torch."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING

from grm.runtime.backends import open_model
from grm.runtime.errors import (
    ArtifactMismatchError,
    BackendUnavailableError,
    CheckpointError,
    ConfigError,
    DatasetError,
    GrmError,
    InputError,
    ParityError,
)
from grm.runtime.multi import MultiTracker
from grm.runtime.params import ModelMetadata, TrackerParams
from grm.runtime.tracker import StageTimes, Tracker, TrackResult
from grm.runtime.version import __version__

if TYPE_CHECKING:
    import typer


def main(argv: list[str] | None = None) -> None:
    """Console entry point ``grm-run`` (:mod:`grm.runtime.cli`), inside the shared error boundary."""
    entered = time.perf_counter()  # the time to first frame counts from here (not from the interpreter's start)
    from grm.runtime.cliapp import run_cli
    from grm.runtime.sources import quiet_opencv

    quiet_opencv()  # before any video is opened: OpenCV/FFmpeg lines would precede the one-line error
    run_cli("grm-run", partial(_load_app, entered), argv)


def _load_app(entered: float | None = None) -> typer.Typer:
    from grm.runtime.cli import app, mark_entry

    if entered is not None:
        mark_entry(entered)
    return app


__all__ = [
    "ArtifactMismatchError",
    "BackendUnavailableError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "GrmError",
    "InputError",
    "ModelMetadata",
    "MultiTracker",
    "ParityError",
    "StageTimes",
    "TrackResult",
    "Tracker",
    "TrackerParams",
    "__version__",
    "main",
    "open_model",
]
