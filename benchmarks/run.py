"""One-pass evaluation: initialise on frame 0's ground-truth box, track every later frame, write results.

Per sequence the runner writes ``<seq>_time.txt`` (seconds per frame, first line = initialisation) and then
``<seq>.txt`` (one ``x,y,w,h`` float row per frame, comma separated, row 0 = the initial box), both
atomically, so an existing ``<seq>.txt`` with one row per frame marks a finished sequence and a killed run
resumes without losing or duplicating one. ``run_manifest.json`` records the model, the division threshold
and where it came from (the dataset preset of the model's metadata, or an override); a folder is never
filled by runs with different settings.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grm.benchmarks.datasets import Dataset, Sequence
from grm.benchmarks.frames import read_rgb
from grm.benchmarks.results import MANIFEST, read_manifest
from grm.benchmarks.textio import format_boxes, read_boxes
from grm.runtime.atomic import atomic_write_text
from grm.runtime.backends.base import Backend
from grm.runtime.errors import ConfigError, DatasetError, InputError
from grm.runtime.tracker import Tracker
from grm.runtime.version import __version__

log = logging.getLogger(__name__)

OpenBackend = Callable[[], Backend]
FrameCallback = Callable[[str, int, int], None]
SequenceCallback = Callable[["SequenceRun"], None]
_WORKER: dict[str, Any] = {}


@dataclass(frozen=True)
class SequenceRun:
    """What tracking one sequence produced (or that it was already done)."""

    name: str
    frames: int
    track_seconds: float
    skipped: bool = False


@dataclass
class RunSummary:
    """Sequences run and skipped, and the tracking speed over the frames run now."""

    folder: Path
    threshold: float
    ran: list[SequenceRun] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float | None:
        frames = sum(r.frames - 1 for r in self.ran)
        seconds = sum(r.track_seconds for r in self.ran)
        return frames / seconds if seconds > 0 else None


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (1-based) -> (i, n); sequence k (0-based) belongs to shard k % n + 1."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as e:
        raise ConfigError(f"--shard must look like i/n, e.g. 2/4; got {text!r}") from e
    if n < 1 or not 1 <= i <= n:
        raise ConfigError(f"--shard {text}: need 1 <= i <= n")
    return i, n


def select(names: list[str], shard: tuple[int, int] = (1, 1), only: tuple[str, ...] = ()) -> list[str]:
    """The sequences of one shard (round-robin over the official order), optionally restricted by name."""
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise DatasetError(f"unknown sequence(s) {', '.join(unknown)}; e.g. {', '.join(names[:3])}")
        names = [n for n in names if n in only]
    i, n = shard
    return names[i - 1 :: n]


def require_present(dataset: Dataset, names: list[str]) -> None:
    """Without ``partial``, every named sequence must be under the root; else one line with the count and the way out."""
    if dataset.partial:
        return
    missing = [n for n in names if not dataset.is_present(n)]
    if not missing:
        return
    if len(missing) == len(names):
        raise DatasetError(
            f"{dataset.name}: none of the {len(names)} sequences asked for is present under {dataset.root} "
            f"(e.g. {missing[0]}); expected {dataset.layout}"
        )
    raise DatasetError(
        f"{dataset.name}: only {len(names) - len(missing)} of {len(names)} sequences are present under "
        f"{dataset.root} (missing: {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); "
        "pass --partial to use only the present ones (scores are then not comparable to published tables)"
    )


def is_finished(folder: Path, seq: Sequence) -> bool:
    """A result file with one row per frame exists (a partial one cannot: writes are atomic)."""
    path = folder / f"{seq.name}.txt"
    if not path.is_file():
        return False
    try:
        rows = len(read_boxes(path))
    except InputError:
        rows = -1
    if rows != len(seq.frames):
        log.warning("%s has %d rows for %d frames; tracking it again", path, rows, len(seq.frames))
        return False
    return True


def track_sequence(
    seq: Sequence, backend: Backend, threshold: float, on_frame: FrameCallback | None = None
) -> tuple[np.ndarray, list[float]]:
    """Boxes (N, 4) xywh and seconds per frame (frame 0 = initialisation) for one sequence."""
    if not seq.frames:
        raise DatasetError(f"{seq.name}: no frames found; the image folder is missing or empty")
    tracker = Tracker(backend, threshold=threshold)
    frame = read_rgb(seq.frames[0])
    start = time.perf_counter()
    tracker.initialize(frame, seq.gt[0])
    times = [time.perf_counter() - start]
    boxes = [tuple(float(v) for v in seq.gt[0])]
    total = len(seq.frames)
    for i, path in enumerate(seq.frames[1:], start=1):
        frame = read_rgb(path)
        start = time.perf_counter()
        result = tracker.track(frame)
        times.append(time.perf_counter() - start)
        boxes.append(result.box_xywh)
        if on_frame is not None:
            on_frame(seq.name, i, total)
    return np.asarray(boxes, dtype=np.float64), times


def run_one(
    seq: Sequence, folder: Path, backend: Backend, threshold: float, on_frame: FrameCallback | None = None
) -> SequenceRun:
    """Track one sequence and write its time file, then its result file, atomically."""
    boxes, times = track_sequence(seq, backend, threshold, on_frame)
    atomic_write_text(folder / f"{seq.name}_time.txt", "".join(f"{t:.6f}\n" for t in times))
    atomic_write_text(folder / f"{seq.name}.txt", format_boxes(boxes))
    return SequenceRun(seq.name, len(boxes), float(sum(times[1:])))


def _worker_init(open_backend: OpenBackend, threshold: float) -> None:
    # Ctrl-C reaches every process of the terminal's group: the parent alone stops the run (see _run_parallel);
    # its SIGTERM ends a worker through SystemExit, so an atomic write in progress removes its temporary file.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _WORKER["backend"] = open_backend()
    _WORKER["threshold"] = threshold


def _worker_run(seq: Sequence, folder: Path) -> SequenceRun:
    return run_one(seq, folder, _WORKER["backend"], _WORKER["threshold"])


def write_manifest(folder: Path, info: dict[str, Any]) -> None:
    """Create or check ``run_manifest.json``: the settings that shape results must match an earlier run."""
    old = read_manifest(folder)
    if old is not None:
        for key in ("threshold", "model_config", "dataset"):
            if key in old and old[key] != info[key]:
                raise ConfigError(
                    f"{folder} holds results with {key}={old[key]!r}, this run has {info[key]!r}; "
                    "use another --results-dir or --label"
                )
        info = {**old, **info, "created": old.get("created", info["created"])}
    atomic_write_text(folder / MANIFEST, json.dumps(info, indent=1, sort_keys=True))


def manifest_info(
    dataset: Dataset, backend: Backend, label: str, model: str, threshold: float, override: bool
) -> dict[str, Any]:
    meta = backend.metadata
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "label": label,
        "model": model,
        "model_config": meta.config,
        "model_precision": meta.precision,
        "backend": backend.name,
        "dataset": dataset.name,
        "data_root": str(dataset.root),
        "threshold": threshold,
        "threshold_source": "override" if override else f"preset {dataset.name.upper()} of the model metadata",
        "grm_version": __version__,
        "created": now,
        "updated": now,
    }


def run_benchmark(
    dataset: Dataset,
    folder: str | Path,
    open_backend: OpenBackend,
    *,
    label: str,
    model: str,
    threshold: float | None = None,
    workers: int = 1,
    shard: tuple[int, int] = (1, 1),
    only: tuple[str, ...] = (),
    on_sequence: SequenceCallback | None = None,
    on_frame: FrameCallback | None = None,
) -> RunSummary:
    """Run the tracker over the dataset (or one shard of it), skipping finished sequences.

    Args:
        open_backend: picklable callable opening the model; called once here and once per worker process.
        threshold: division threshold override; None takes ``TrackerParams.threshold_for(dataset.name)``.
        workers: processes tracking sequences in parallel (1 = in this process, with per-frame progress).
    """
    folder = Path(folder)
    names = select(dataset.sequence_names(), shard, only)
    require_present(dataset, names)
    backend = open_backend()
    try:
        value = backend.metadata.tracker.threshold_for(dataset.name) if threshold is None else float(threshold)
        write_manifest(folder, manifest_info(dataset, backend, label, model, value, threshold is not None))
        summary = RunSummary(folder, value)
        todo = []
        for name in names:
            seq = dataset.load(name)
            if is_finished(folder, seq):
                summary.skipped.append(name)
                if on_sequence is not None:
                    on_sequence(SequenceRun(name, len(seq.frames), 0.0, skipped=True))
            else:
                todo.append(seq)
        if workers <= 1:
            for seq in todo:
                _record(summary, run_one(seq, folder, backend, value, on_frame), on_sequence)
            return summary
    finally:
        backend.close()
    _run_parallel(todo, folder, open_backend, value, workers, summary, on_sequence)
    return summary


def _record(summary: RunSummary, result: SequenceRun, on_sequence: SequenceCallback | None) -> None:
    summary.ran.append(result)
    if on_sequence is not None:
        on_sequence(result)


def _run_parallel(
    todo: list[Sequence],
    folder: Path,
    open_backend: OpenBackend,
    threshold: float,
    workers: int,
    summary: RunSummary,
    on_sequence: SequenceCallback | None,
) -> None:
    """Track sequences in ``workers`` spawned processes, each opening the model once."""
    if not todo:
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(todo)),
        mp_context=context,
        initializer=_worker_init,
        initargs=(open_backend, threshold),
    ) as pool:
        futures = [pool.submit(_worker_run, seq, folder) for seq in todo]
        try:
            for future in as_completed(futures):
                _record(summary, future.result(), on_sequence)
        except KeyboardInterrupt:
            _stop_workers(pool, futures)
            raise


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _stop_workers(pool: ProcessPoolExecutor, futures: list[Future[SequenceRun]]) -> None:
    """Drop the queued sequences and end the workers now (finished result files stay; a rerun resumes)."""
    for future in futures:
        future.cancel()
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
