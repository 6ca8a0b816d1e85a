"""grm.benchmarks: run, score and time GRM models on tracking benchmarks (``grm-bench``). Never imports torch.

- :mod:`grm.benchmarks.datasets`: loaders for UAV123/UAV20L, LaSOT (+ extension), NfS, AVisT, GOT-10k,
  TrackingNet and OTB-100 in their official layouts;
- :mod:`grm.benchmarks.run`: one-pass evaluation with resumable, atomic per-sequence results;
- :mod:`grm.benchmarks.metrics` and :mod:`grm.benchmarks.analysis`: the PyTracking and OTB-toolkit
  protocols and GOT-10k's AO/SR (differences in ``benchmarks/PROTOCOLS.md``);
- :mod:`grm.benchmarks.report`, :mod:`grm.benchmarks.plots`: tables, JSON and PNG plots;
- :mod:`grm.benchmarks.speed`: latency and throughput; :mod:`grm.benchmarks.submission`: server zips.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

COMMANDS = ("run", "analyze", "speed", "pack")


def main(argv: list[str] | None = None) -> None:
    """Console entry point ``grm-bench`` inside the shared error boundary (:mod:`grm.runtime.cliapp`).

    ``grm-bench --dataset ...`` without a command means ``grm-bench run --dataset ...``.
    """
    import sys

    from grm.runtime.cliapp import DEBUG_FLAG, run_cli
    from grm.runtime.sources import quiet_opencv

    args = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args if a != DEBUG_FLAG), None)
    if first is not None and first not in (*COMMANDS, "--help", "-h"):
        args.insert(0, "run")
    logging.basicConfig(level=logging.WARNING, format="grm-bench: %(levelname)s: %(message)s")
    quiet_opencv()  # before any video is opened: OpenCV/FFmpeg lines would precede the one-line error
    run_cli("grm-bench", _load_app, args)


def _load_app() -> typer.Typer:
    from grm.benchmarks.cli import app

    return app
