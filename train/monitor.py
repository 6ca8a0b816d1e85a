"""Training metrics sinks: a JSON-lines log (always) and TensorBoard scalars (when installed).

TensorBoard is optional and never asked for on the command line, so its absence is no news to the user: it is
said once per process, at debug level.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_said: set[str] = set()


class MetricsLog:
    """Appends one JSON object per line to ``<output>/metrics.jsonl``; mirrors scalars to TensorBoard.

    Args:
        output: run folder.
        tensorboard: write ``<output>/tensorboard`` event files when the package is importable.
    """

    def __init__(self, output: str | Path, tensorboard: bool = True) -> None:
        self.path = Path(output) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tb = _tensorboard_writer(Path(output) / "tensorboard") if tensorboard else None

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """Record ``values`` for ``kind`` ("epoch", "iter" or "val") at ``step`` (epoch or global iteration)."""
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of a metrics log, optionally only one kind."""
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r for r in records if kind is None or r["kind"] == kind]


def _tensorboard_writer(directory: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        _once("tensorboard is not installed (pip install tensorboard); metrics go to metrics.jsonl only")
        return None
    return SummaryWriter(log_dir=str(directory))


def _once(message: str) -> None:
    """A debug note, logged the first time only (every run and every resume builds a new log)."""
    if message not in _said:
        _said.add(message)
        log.debug(message)
