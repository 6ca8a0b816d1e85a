"""One-pass evaluation: initialise on frame 0's ground-truth box, track every later frame, write results.

Per sequence the runner writes ``<seq>_time.txt`` (seconds per frame, first line = initialisation) and then
``<seq>.txt`` (one ``x,y,w,h`` float row per frame, comma separated, row 0 = the initial box), both
atomically, so an existing ``<seq>.txt`` with one row per frame marks a finished sequence and a killed run
resumes without losing or duplicating one. ``run_manifest.json`` records the model, the division threshold
and where it came from (the dataset preset of the model's metadata, or an override); a folder is never
filled by runs with different settings.

With ``batch`` N > 1, N sequences are tracked at once through one :class:`~grm.runtime.multi.MultiTracker`
(one backend call per step for a batch-N or dynamic model); when a sequence ends, its slot takes the next
one. Each sequence gets the boxes it gets alone (the same per-target code), so the result files are those
of a batch-1 run; the time files then hold each step's share (:data:`FRAME_TIME`). With ``devices``, worker
processes are spread over those CUDA devices (round-robin), each opening the model on its own device.
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import queue
import signal
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import numpy as np

from grm.benchmarks.datasets import Dataset, Sequence
from grm.benchmarks.frames import read_rgb
from grm.benchmarks.results import MANIFEST, read_manifest
from grm.benchmarks.textio import format_boxes, read_boxes
from grm.runtime.atomic import atomic_write_text
from grm.runtime.backends.base import Backend
from grm.runtime.datasets import dataset_threshold, preset_key
from grm.runtime.errors import ConfigError, DatasetError, InputError
from grm.runtime.multi import MultiTracker
from grm.runtime.tracker import Tracker
from grm.runtime.version import __version__

log = logging.getLogger(__name__)

OpenBackend = Callable[[], Backend]
FrameCallback = Callable[[str, int, int | None], None]  # (sequence or batch, frames done, frames in all)
SequenceCallback = Callable[["SequenceRun"], None]
_WORKER: dict[str, Any] = {}
FRAME_TIME = {
    "single": "seconds of Tracker.track for this frame (frame reading excluded); first row: initialisation",
    "batched": (
        "seconds of the MultiTracker.track_each step that tracked this frame together with the other sequences "
        "of the batch (crops, one backend call per model batch, decoding; frame reading excluded), divided by "
        "the number of sequences in that step; first row: this sequence's initialisation (template crop)"
    ),
}
"""What one row of ``<seq>_time.txt`` holds, for batch-1 and batched runs (recorded in the manifest)."""


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


def parse_ints(text: str, option: str, minimum: int = 0) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2): a comma-separated list of distinct whole numbers >= ``minimum``."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{option} must be whole numbers separated by commas, e.g. 0,1; got {text!r}") from None
    if any(v < minimum for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"{option} {text}: give distinct numbers >= {minimum}")
    return values


def on_device(open_backend: OpenBackend, device: int | None) -> OpenBackend:
    """The opener for CUDA device ``device`` (None: the opener itself); it must have ``with_device(device)``
    (as :class:`grm.benchmarks.engine.EngineOpener` has)."""
    if device is None:
        return open_backend
    with_device = getattr(open_backend, "with_device", None)
    if with_device is None:
        raise ConfigError(f"--devices: {open_backend!r} cannot open the model on a chosen device")
    opener: OpenBackend = with_device(device)
    return opener


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
    return write_sequence(folder, seq.name, boxes, times)


def write_sequence(folder: Path, name: str, boxes: np.ndarray, times: list[float]) -> SequenceRun:
    """Write ``<name>_time.txt`` (seconds per frame), then ``<name>.txt`` (xywh rows), each atomically."""
    atomic_write_text(folder / f"{name}_time.txt", "".join(f"{t:.6f}\n" for t in times))
    atomic_write_text(folder / f"{name}.txt", format_boxes(boxes))
    return SequenceRun(name, len(boxes), float(sum(times[1:])))


@dataclass
class _Slot:
    """One sequence being tracked in a batch: its target id, the boxes (xywh) and seconds of its frames so far."""

    seq: Sequence
    target: int
    boxes: list[tuple[float, ...]]
    times: list[float]

    @property
    def done(self) -> bool:
        return len(self.boxes) == len(self.seq.frames)


def track_batched(
    sequences: Iterable[Sequence],
    folder: Path,
    backend: Backend,
    threshold: float,
    batch: int,
    on_frame: FrameCallback | None = None,
    on_sequence: SequenceCallback | None = None,
    total: int | None = None,
) -> list[SequenceRun]:
    """Track ``batch`` sequences at a time through one :class:`MultiTracker`; a finished sequence's files are
    written at once and its slot takes the next sequence. Seconds per frame as :data:`FRAME_TIME` ``batched``.

    ``sequences`` is consumed lazily (a queue shared by worker processes works). ``on_frame`` gets
    ``("batch of N", target-frames tracked so far, total)`` after each tracked target-frame.
    """
    tracker = MultiTracker(backend, threshold=threshold)
    pending = iter(sequences)
    slots: list[_Slot] = []
    runs: list[SequenceRun] = []
    tracked = 0

    def finish(slot: _Slot) -> None:
        run = write_sequence(folder, slot.seq.name, np.asarray(slot.boxes, dtype=np.float64), slot.times)
        runs.append(run)
        if on_sequence is not None:
            on_sequence(run)

    def fill() -> None:
        while len(slots) < batch:
            seq = next(pending, None)
            if seq is None:
                return
            slot = _start(tracker, seq)
            if slot.done:  # a one-frame sequence: nothing to track
                tracker.remove(slot.target)
                finish(slot)
            else:
                slots.append(slot)

    fill()
    while slots:
        frames = {s.target: read_rgb(s.seq.frames[len(s.boxes)]) for s in slots}
        start = time.perf_counter()
        try:
            results = tracker.track_each(frames)
        except InputError as e:
            where = ", ".join(f"target {s.target} = {s.seq.name} frame {len(s.boxes)}" for s in slots)
            raise InputError(f"{e} ({where})") from None
        share = (time.perf_counter() - start) / len(slots)
        for slot in slots:
            slot.boxes.append(results[slot.target].box_xywh)
            slot.times.append(share)
            tracked += 1
            if on_frame is not None:
                on_frame(f"batch of {batch}", tracked, total)
        for slot in [s for s in slots if s.done]:
            slots.remove(slot)
            tracker.remove(slot.target)
            finish(slot)
        fill()
    return runs


def _start(tracker: MultiTracker, seq: Sequence) -> _Slot:
    """Add a sequence's target on its frame 0 (ground-truth box); the time of that is its first time row."""
    if not seq.frames:
        raise DatasetError(f"{seq.name}: no frames found; the image folder is missing or empty")
    frame = read_rgb(seq.frames[0])
    start = time.perf_counter()
    try:
        target = tracker.add(frame, seq.gt[0])
    except InputError as e:
        raise InputError(f"{seq.name}: {e}") from None
    return _Slot(seq, target, [tuple(float(v) for v in seq.gt[0])], [time.perf_counter() - start])


def _worker_init(
    open_backend: OpenBackend,
    threshold: float,
    batch: int = 1,
    devices: Queue[int] | None = None,
    jobs: Queue[Sequence | None] | None = None,
    done: Queue[SequenceRun] | None = None,
) -> None:
    """Open the model once per worker, on the next device of ``devices`` (one entry per worker) when given.

    Batched workers take sequences from ``jobs`` (until a None) and report each finished one on ``done``.
    """
    # Ctrl-C reaches every process of the terminal's group: the parent alone stops the run (see _run_parallel);
    # its SIGTERM ends a worker through SystemExit, so an atomic write in progress removes its temporary file.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    device = None if devices is None else devices.get()
    _WORKER.update(backend=on_device(open_backend, device)(), device=device, threshold=threshold, batch=batch)
    _WORKER.update(jobs=jobs, done=done)


def _worker_run(seq: Sequence, folder: Path) -> SequenceRun:
    return run_one(seq, folder, _WORKER["backend"], _WORKER["threshold"])


def _worker_run_batched(folder: Path) -> int:
    """Track sequences from the shared job queue, ``batch`` at a time, until its end marker; returns how many."""
    w = _WORKER
    jobs = iter(w["jobs"].get, None)
    return len(track_batched(jobs, folder, w["backend"], w["threshold"], w["batch"], on_sequence=w["done"].put))


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
        batches = sorted({*old.get("batches", [old.get("batch", 1)]), *info["batches"]})
        if len(batches) > 1:
            log.warning("%s now holds time files of batch %s runs (see frame_time in %s)", folder, batches, MANIFEST)
        info = {**old, **info, "batches": batches, "created": old.get("created", info["created"])}
    atomic_write_text(folder / MANIFEST, json.dumps(info, indent=1, sort_keys=True))


def manifest_info(
    dataset: Dataset,
    backend: Backend,
    label: str,
    model: str,
    threshold: float,
    override: bool,
    batch: int = 1,
    devices: tuple[int, ...] = (),
) -> dict[str, Any]:
    """The settings of a run: model, threshold and its source, batch (sequences tracked at once; ``batches``
    lists every batch whose files the folder holds), the meaning of the time files, CUDA devices."""
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
        "threshold_source": "override" if override else f"preset {preset_key(dataset.name)} of the model metadata",
        "batch": batch,
        "batches": [batch],
        "model_batch": meta.batch,
        "frame_time": FRAME_TIME["single" if batch == 1 else "batched"],
        **({"devices": list(devices)} if devices else {}),
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
    batch: int | None = None,
    devices: tuple[int, ...] = (),
) -> RunSummary:
    """Run the tracker over the dataset (or one shard of it), skipping finished sequences.

    Args:
        open_backend: picklable callable opening the model; called once here and once per worker process.
        threshold: division threshold override; None takes the model's preset for the dataset
            (:func:`grm.runtime.datasets.dataset_threshold`).
        workers: processes tracking sequences in parallel (1 = in this process, with per-frame progress);
            at least one per device.
        batch: sequences tracked at once through one batched model; None = the model's batch (1 for a
            dynamic-batch model).
        devices: CUDA devices the worker processes are spread over (round-robin); this process opens the model
            on the first. Needs an ``open_backend`` with ``with_device`` (:class:`~grm.benchmarks.engine.EngineOpener`).
    """
    folder = Path(folder)
    names = select(dataset.sequence_names(), shard, only)
    require_present(dataset, names)
    if devices:
        workers = max(workers, len(devices))
    backend = on_device(open_backend, devices[0] if devices else None)()
    try:
        value = dataset_threshold(backend.metadata.tracker, dataset.name) if threshold is None else float(threshold)
        batch = resolve_batch(batch, backend.metadata.batch)
        info = manifest_info(dataset, backend, label, model, value, threshold is not None, batch, devices)
        write_manifest(folder, info)
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
        if workers <= 1 and batch > 1:
            total = sum(len(seq.frames) - 1 for seq in todo)
            record = functools.partial(_record, summary, on_sequence=on_sequence)
            track_batched(todo, folder, backend, value, batch, on_frame, record, total)
            return summary
        if workers <= 1:
            for seq in todo:
                _record(summary, run_one(seq, folder, backend, value, on_frame), on_sequence)
            return summary
    finally:
        backend.close()
    _run_parallel(todo, folder, open_backend, value, workers, summary, on_sequence, batch, devices)
    return summary


def resolve_batch(batch: int | None, model_batch: int) -> int:
    """Sequences per step: ``batch``, or the model's batch (1 for a dynamic model, ``model_batch`` 0); warns when
    a static batch-M model would compute padding rows every step (``batch`` not a multiple of M)."""
    if batch is None:
        return model_batch or 1
    if batch < 1:
        raise ConfigError(f"--batch {batch}: track at least 1 sequence at a time")
    if model_batch and batch % model_batch:
        pairs = -(-batch // model_batch) * model_batch
        log.warning(
            "--batch %d on a batch-%d model: every step computes %d pairs for %d sequences; use a multiple of %d",
            batch,
            model_batch,
            pairs,
            batch,
            model_batch,
        )
    return batch


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
    batch: int = 1,
    devices: tuple[int, ...] = (),
) -> None:
    """Track sequences in ``workers`` spawned processes, each opening the model once (on its device).

    Batch 1: one task per sequence. Batch N: one task per worker, taking sequences from a shared queue as its
    slots free up and reporting each finished one through a second queue (for progress).
    """
    if not todo:
        return
    context = multiprocessing.get_context("spawn")
    count = min(workers, len(todo))
    device_queue = None
    if devices:
        device_queue = context.Queue()
        for i in range(count):
            device_queue.put(devices[i % len(devices)])
    jobs = done = None
    if batch > 1:
        jobs, done = context.Queue(), context.Queue()
        for seq in [*todo, *[None] * count]:
            jobs.put(seq)
    with ProcessPoolExecutor(
        max_workers=count,
        mp_context=context,
        initializer=_worker_init,
        initargs=(open_backend, threshold, batch, device_queue, jobs, done),
    ) as pool:
        if done is not None:
            batched = [pool.submit(_worker_run_batched, folder) for _ in range(count)]
            try:
                _collect(batched, done, summary, on_sequence)
            except BaseException:  # a failed worker or Ctrl-C: stop the others now (finished files stay)
                _stop_workers(pool, batched)
                raise
            return
        futures = [pool.submit(_worker_run, seq, folder) for seq in todo]
        try:
            for future in as_completed(futures):
                _record(summary, future.result(), on_sequence)
        except KeyboardInterrupt:
            _stop_workers(pool, futures)
            raise


def _collect(
    futures: list[Future[int]], done: Queue[SequenceRun], summary: RunSummary, on_sequence: SequenceCallback | None
) -> None:
    """Record the sequences batched workers report until every worker has ended; a worker's error is raised."""
    received = 0
    while True:
        try:
            _record(summary, done.get(timeout=0.2), on_sequence)
            received += 1
        except queue.Empty:
            pass
        for future in futures:
            if future.done() and future.exception() is not None:
                future.result()
        if all(f.done() for f in futures):
            break
    for _ in range(sum(f.result() for f in futures) - received):  # reports still on their way
        _record(summary, done.get(timeout=60), on_sequence)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _stop_workers(pool: ProcessPoolExecutor, futures: list[Future[Any]]) -> None:
    """Drop the queued sequences and end the workers now (finished result files stay; a rerun resumes)."""
    for future in futures:
        future.cancel()
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
