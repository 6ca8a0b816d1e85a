"""Tracking speed of one or more engines on real frames, measured the same way for every engine.

Per engine: open the model, track ``warmup`` frames (discarded), initialise again on frame 0 and track
every later frame of the clip. Frames are read from disk or the video before the clock starts, one at a
time, so reading is not timed and memory holds one frame. Reported:

- ``fps`` = tracked target-frames / total tracking time, where tracking time sums ``Tracker.track`` calls
  (crop + normalise, inference, decode + map back); initialisation, reading and colour conversion excluded;
- per-frame latency p50/p90/p99 in milliseconds, overall and per stage (from ``TrackResult.times``);
- peak resident memory of the process (``resource.getrusage``); each engine runs in its own fresh
  process unless ``isolate=False``, so the figure belongs to that engine;
- with several engines, speed ratios relative to the first one.

With a batch B (``batch``; default: the model's batch, 1 for a dynamic model) a B > 1 configuration tracks B
targets on every frame through one :class:`~grm.runtime.multi.MultiTracker` (all starting from the clip's box:
the network's cost does not depend on where they are). Its latency is the whole ``MultiTracker.track`` call
for the B targets and its fps counts target-frames (B per frame), so rows of different B compare per target.
``rounds`` > 1 measures every configuration that many times, interleaved (each in a fresh process), and pools
their frames, so load changes on a shared machine fall on every configuration alike.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.benchmarks.frames import read_rgb
from grm.runtime.atomic import atomic_write_text
from grm.runtime.backends.base import Backend
from grm.runtime.cpu_features import cpu_features
from grm.runtime.errors import InputError
from grm.runtime.multi import MultiTracker
from grm.runtime.sources import open_source
from grm.runtime.stats import latency_ms, percentiles_ms
from grm.runtime.tracker import StageTimes, Tracker, TrackResult

FPS_DEFINITION = (
    "tracked target-frames (frames x targets per frame) / sum of Tracker.track wall times (MultiTracker.track "
    "with B targets at batch B; initialisation, frame reading and decoding excluded)"
)
BEGIN, END = "<!-- grm-bench speed: begin -->", "<!-- grm-bench speed: end -->"
SPEED_HEAD = (
    "Engine",
    "Backend",
    "FPS",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "pre / inference / post ms (mean)",
    "peak RSS MiB",
    "vs first",
)


@dataclass(frozen=True)
class Clip:
    """Frames to time: a list of image files, or a video/folder source, plus the initial box (xywh px)."""

    name: str
    init_box: tuple[float, float, float, float]
    files: tuple[Path, ...] = ()
    source: str | None = None
    max_frames: int = 300

    def frames(self) -> Iterator[NDArray[np.uint8]]:
        """RGB frames, at most ``max_frames``; undecodable frames of a source are skipped."""
        if self.source is None:
            for path in self.files[: self.max_frames]:
                yield read_rgb(path)
            return
        src = open_source(self.source)
        count = 0
        try:
            for _, frame in src:
                if frame is None:
                    continue
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                count += 1
                if count >= self.max_frames:
                    break
        finally:
            src.close()


@dataclass(frozen=True)
class EngineSpeed:
    """Speed of one engine on one clip."""

    label: str
    backend: str
    threshold: float
    frames: int
    track_seconds: float
    fps: float
    init_ms: float
    latency_ms: dict[str, dict[str, float]]
    stage_mean_ms: dict[str, float]
    peak_rss_mb: float
    batch: int = 1  # targets tracked on every frame
    rounds: int = 1  # interleaved measurements pooled into this row
    cpu_fps: float | None = None  # target-frames per CPU second of the process (all its threads)


@dataclass(frozen=True)
class Timing:
    """Raw timings of one configuration in one process: seconds per tracked frame (all its targets), its
    stages, the initialisation, and the process's peak RSS (MiB)."""

    backend: str
    threshold: float
    batch: int
    walls: list[float]
    stages: list[StageTimes]
    init: float
    peak_rss_mb: float
    cpu_seconds: float = 0.0  # process CPU time of the timed frames (all threads)


class BatchTargets:
    """``batch`` targets on every frame through one :class:`MultiTracker`, behind :class:`Tracker`'s
    ``initialize(frame, box)`` / ``track(frame)`` (which returns the first target's result; its ``times`` are
    the whole frame's)."""

    def __init__(self, backend: Backend, batch: int, threshold: float) -> None:
        self.tracker = MultiTracker(backend, threshold=threshold)
        self.batch = batch

    def initialize(self, frame: NDArray[np.uint8], box_xywh: Sequence[float]) -> None:
        self.tracker.initialize(frame, [box_xywh] * self.batch)

    def track(self, frame: NDArray[np.uint8]) -> TrackResult:
        return next(iter(self.tracker.track(frame).values()))


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _warm_up(tracker: Tracker | BatchTargets, clip: Clip, warmup: int) -> None:
    """Initialise and track ``warmup`` frames, cycling through the clip when it is shorter."""
    done = 0
    while True:
        frames = clip.frames()
        first = next(frames, None)
        if first is None:
            raise InputError(f"clip {clip.name} has no readable frame")
        tracker.initialize(first, clip.init_box)
        tracked = 0
        for frame in frames:
            if done >= warmup:
                return
            tracker.track(frame)
            done, tracked = done + 1, tracked + 1
        if tracked == 0:
            raise InputError(f"clip {clip.name} needs at least 2 frames to time tracking")
        if done >= warmup:
            return


def measure(
    open_backend: Callable[[], Backend],
    clip: Clip,
    label: str,
    warmup: int = 10,
    threshold: float | None = None,
    dataset: str | None = None,
    batch: int | None = None,
) -> EngineSpeed:
    """Time one engine on the clip (see the module docstring for what is and is not timed)."""
    return summarize(label, [time_clip(open_backend, clip, warmup, threshold, dataset, batch)])


def time_clip(
    open_backend: Callable[[], Backend],
    clip: Clip,
    warmup: int = 10,
    threshold: float | None = None,
    dataset: str | None = None,
    batch: int | None = None,
) -> Timing:
    """Raw timings of one configuration in this process; ``batch`` targets per frame (None: the model's batch,
    1 for a dynamic model)."""
    backend = open_backend()
    try:
        value = backend.metadata.tracker.threshold_for(dataset) if threshold is None else float(threshold)
        targets = batch if batch is not None else backend.metadata.batch or 1
        tracker = Tracker(backend, threshold=value) if targets == 1 else BatchTargets(backend, targets, value)
        _warm_up(tracker, clip, warmup)
        frames = clip.frames()
        first = next(frames)
        start = time.perf_counter()
        tracker.initialize(first, clip.init_box)
        init = time.perf_counter() - start
        walls, stages, cpu = [], [], 0.0
        for frame in frames:
            start, cpu_start = time.perf_counter(), time.process_time()
            result = tracker.track(frame)
            walls.append(time.perf_counter() - start)
            cpu += time.process_time() - cpu_start
            stages.append(result.times)
        name = backend.name
    finally:
        backend.close()
    if not walls:
        raise InputError(f"clip {clip.name} needs at least 2 frames to time tracking")
    return Timing(name, value, targets, walls, stages, init, peak_rss_mb(), cpu)


def summarize(label: str, timings: Sequence[Timing]) -> EngineSpeed:
    """One row from one configuration's timings (rounds pooled: every frame, the median initialisation and the
    highest peak RSS)."""
    first = timings[0]
    walls = [w for t in timings for w in t.walls]
    stages = [s for t in timings for s in t.stages]
    init = float(np.median([t.init for t in timings]))
    peak = max(t.peak_rss_mb for t in timings)
    speed = _speed(label, first.backend, first.threshold, walls, stages, init, first.batch, peak, len(timings))
    cpu = sum(t.cpu_seconds for t in timings)
    return replace(speed, cpu_fps=len(walls) * first.batch / cpu if cpu > 0 else None)


def _speed(
    label: str,
    backend: str,
    threshold: float,
    walls: list[float],
    stages: list[StageTimes],
    init: float,
    batch: int,
    peak_mb: float,
    rounds: int,
) -> EngineSpeed:
    total = float(sum(walls))
    latency = latency_ms(stages)
    latency["frame"] = percentiles_ms(walls)
    means = {
        s: float(np.mean([getattr(t, s) for t in stages]) * 1e3) for s in ("preprocess", "inference", "postprocess")
    }
    return EngineSpeed(
        label=label,
        backend=backend,
        threshold=threshold,
        frames=len(walls),
        track_seconds=total,
        fps=len(walls) * batch / total,
        init_ms=init * 1e3,
        latency_ms=latency,
        stage_mean_ms=means,
        peak_rss_mb=peak_mb,
        batch=batch,
        rounds=rounds,
    )


def measure_isolated(open_backend: Callable[[], Backend], clip: Clip, label: str, **kw: Any) -> EngineSpeed:
    """:func:`measure` in a fresh spawned process, so peak memory and warm caches belong to this engine."""
    return summarize(label, [time_isolated(open_backend, clip, **kw)])


def time_isolated(open_backend: Callable[[], Backend], clip: Clip, **kw: Any) -> Timing:
    """:func:`time_clip` in a fresh spawned process: its peak RSS is this configuration's alone."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(time_clip, open_backend, clip, **kw).result()


def speed_label(label: str, batch: int, explicit: bool) -> str:
    """A row's engine label: the file name, with ``[batch B]`` when a batch was asked for or B is not 1."""
    return f"{label} [batch {batch}]" if explicit or batch != 1 else label


def compare(results: list[EngineSpeed]) -> list[dict[str, Any]]:
    """Each engine relative to the first: fps ratio and p50/p99 frame-latency ratios (>1 = faster)."""
    base = results[0]
    rows = []
    for r in results[1:]:
        rows.append(
            {
                "engine": r.label,
                "baseline": base.label,
                "fps_ratio": r.fps / base.fps,
                "p50_speedup": base.latency_ms["frame"]["p50"] / r.latency_ms["frame"]["p50"],
                "p99_speedup": base.latency_ms["frame"]["p99"] / r.latency_ms["frame"]["p99"],
            }
        )
    return rows


def speed_report(results: list[EngineSpeed], clip: Clip, warmup: int) -> dict[str, Any]:
    """JSON-ready report: definitions, machine, clip, per-engine speed and ratios."""
    return {
        "fps_definition": FPS_DEFINITION,
        "latency_unit": "ms",
        "warmup_frames": warmup,
        "clip": {"name": clip.name, "frames": results[0].frames + 1 if results else 0},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "cpu_features": cpu_features().summary(),
        },
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "engines": [asdict(r) for r in results],
        "ratios": compare(results) if len(results) > 1 else [],
    }


def results_markdown(report: dict[str, Any]) -> str:
    """The speed section of RESULTS.md (between markers, so later updates replace it)."""
    lines = [
        BEGIN,
        "## Speed",
        "",
        f"Measured {report['measured']} on {report['machine']['processor']} ({report['machine']['cpus']} CPUs, "
        f"{report['machine']['platform']}); clip {report['clip']['name']} ({report['clip']['frames']} frames), "
        f"{report['warmup_frames']} warm-up frames. FPS = {report['fps_definition']}.",
        "",
        f"CPU features: {report['machine'].get('cpu_features', 'not recorded')}.",
        "",
        "| " + " | ".join(SPEED_HEAD) + " |",
        "| " + " | ".join(["---"] * len(SPEED_HEAD)) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in speed_rows(report)]
    return "\n".join([*lines, END]) + "\n"


def speed_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row of :data:`SPEED_HEAD` cells per engine of a :func:`speed_report`."""
    ratios = {r["engine"]: r["fps_ratio"] for r in report["ratios"]}
    rows = []
    for e in report["engines"]:
        f, s = e["latency_ms"]["frame"], e["stage_mean_ms"]
        rows.append(
            [
                e["label"],
                e["backend"],
                f"{e['fps']:.1f}",
                *(f"{f[k]:.2f}" for k in ("p50", "p90", "p99")),
                " / ".join(f"{s[k]:.2f}" for k in ("preprocess", "inference", "postprocess")),
                f"{e['peak_rss_mb']:.0f}",
                f"{ratios[e['label']]:.2f}x" if e["label"] in ratios else "1.00x",
            ]
        )
    return rows


def format_speed_table(report: dict[str, Any], info: Sequence[str] = ()) -> str:
    """The console view of a :func:`speed_report`: what was timed and where, then one aligned row per engine.

    ``info`` lines (facts about the machine) go under the machine line.
    """
    m = report["machine"]
    head = [
        f"clip {report['clip']['name']} ({report['clip']['frames']} frames), {report['warmup_frames']} warm-up "
        f"frames; {m['processor']}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}",
        *([f"CPU features: {m['cpu_features']}"] if m.get("cpu_features") else []),
        *info,
    ]
    rows = [list(SPEED_HEAD), *speed_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(SPEED_HEAD))]
    left = {0, 1}  # text columns; numbers align right

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in pairs)

    table = [line(rows[0]), line(["-" * w for w in widths]), *(line(r) for r in rows[1:])]
    return "\n".join([*head, "", *table, "", f"FPS = {report['fps_definition']}; latency in ms."]).rstrip()


def update_results_file(path: str | Path, report: dict[str, Any]) -> Path:
    """Replace (or append) the speed section of a markdown file, atomically."""
    path = Path(path)
    text = path.read_text() if path.is_file() else "# grm-tracker benchmark results\n\n"
    section = results_markdown(report)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    return atomic_write_text(path, text)
