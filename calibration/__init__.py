"""grm.calibration: INT8 Q/DQ GRM models from real tracker crops, with their accuracy cost measured.

``import grm.calibration`` stays cheap; :func:`main` is the ``grm-calibrate`` console script.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grm.runtime.cliapp import Needs, run_cli

if TYPE_CHECKING:
    import typer

NEEDS = (Needs("onnx", "calibrate"), Needs("onnxruntime", "calibrate"))


def _load_app() -> typer.Typer:
    from grm.calibration.cli import app

    return app


def main(argv: list[str] | None = None) -> None:
    """``grm-calibrate``: checks the calibrate extra (also for ``--help``), then runs the CLI in the error boundary."""
    run_cli("grm-calibrate", _load_app, argv, needs=NEEDS)
