"""Calibration data from the tracker itself: the template and search crops the FP32 model is fed while tracking.

The FP32 model tracks each calibration sequence with :class:`grm.runtime.Tracker`; on planned frames the
exact arrays the tracker passes to the network (normalised float32 template and search crops, the threshold)
are kept. Calibration therefore sees the crop scales, padding and drift of deployment, not random crops.

The frame plan is deterministic (quota per sequence, evenly spaced frames), and the result is cached as
``crops-<hash>.npz`` with a ``crops-<hash>.json`` manifest (sources, frame indices, threshold, model hash).
The hash covers everything the crops depend on, so a matching manifest is a cache hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from grm.calibration.sequences import TrackSequence
from grm.runtime import contract
from grm.runtime.atomic import atomic_path, atomic_write_text
from grm.runtime.backends.base import Backend
from grm.runtime.backends.io_check import fill_rows
from grm.runtime.errors import InputError
from grm.runtime.params import ModelMetadata
from grm.runtime.tracker import Tracker

log = logging.getLogger(__name__)
CACHE_FORMAT = 1
Progress = Callable[[int, int], None]
"""Called as ``progress(advance, total)`` per frame; ``total`` is the frame count of the current sequence."""


@dataclass(frozen=True)
class CalibrationSet:
    """Cached network inputs.

    Attributes:
        templates: (K, 3, T, T) float32, one normalised template per calibration sequence.
        search: (N, 3, S, S) float32 normalised search crops.
        template_index: (N,) which template each search crop was tracked with.
        threshold: division threshold the tracker ran with.
        manifest: sources, frame indices, threshold and ``hash``.
    """

    templates: NDArray[np.float32]
    search: NDArray[np.float32]
    template_index: NDArray[np.int32]
    threshold: float
    manifest: Mapping[str, Any]

    @property
    def hash(self) -> str:
        return str(self.manifest["hash"])

    def __len__(self) -> int:
        return len(self.search)

    def feed(self, i: int) -> dict[str, NDArray[np.float32]]:
        """Network inputs of sample ``i``, batch 1, in contract names."""
        return {
            contract.TEMPLATE: self.templates[self.template_index[i]][None],
            contract.SEARCH: self.search[i][None],
            contract.THRESHOLD: np.array([self.threshold], dtype=np.float32),
        }

    def feed_rows(self, indices: Sequence[int], rows: int = 1) -> dict[str, NDArray[np.float32]]:
        """Network inputs of samples ``indices`` stacked row by row, padded to ``rows`` rows by repeating the
        last sample: a static batch-N model takes exactly N rows (``rows`` 0 or fewer than ``indices``: no padding).
        """
        feeds = [self.feed(i) for i in indices]
        stacked = {}
        for name in feeds[0]:
            rows_in = np.concatenate([f[name] for f in feeds])
            stacked[name] = np.empty((max(rows, len(feeds)), *rows_in.shape[1:]), dtype=np.float32)
            fill_rows(stacked[name], rows_in, len(feeds), name)
        return stacked

    def feeds(self) -> Iterator[dict[str, NDArray[np.float32]]]:
        """Every sample's network inputs in order."""
        for i in range(len(self.search)):
            yield self.feed(i)


def plan_frames(
    sequences: Sequence[TrackSequence], samples: int, max_frames: int | None = None
) -> dict[str, list[int]]:
    """Frame indices to keep per sequence: ``samples`` spread round-robin, then evenly over each sequence.

    Frame 0 initialises the tracker and is never a search sample. A sequence with fewer usable frames than
    its share passes the rest to the others; fewer frames in total than ``samples`` keeps all of them.
    """
    if samples < 1:
        raise InputError(f"--samples must be at least 1, got {samples}")
    usable = {s.name: max(0, min(s.num_frames, max_frames or s.num_frames) - 1) for s in sequences}
    quota = dict.fromkeys(usable, 0)
    remaining = samples
    while remaining > 0 and any(quota[n] < usable[n] for n in usable):
        for name in usable:
            if remaining > 0 and quota[name] < usable[name]:
                quota[name] += 1
                remaining -= 1
    plan = {}
    for name, count in quota.items():
        if count:
            picks = np.linspace(1, usable[name], count)
            plan[name] = sorted({int(round(float(v))) for v in picks})
    return plan


def build_manifest(
    sequences: Sequence[TrackSequence], plan: Mapping[str, list[int]], threshold: float, model_sha256: str
) -> dict[str, Any]:
    """Everything the crops depend on, plus its hash (the cache key)."""
    sources = [
        {"name": s.name, "path": str(s.source.resolve()), "fingerprint": s.fingerprint(), "frames": plan[s.name]}
        for s in sequences
        if s.name in plan
    ]
    body = {"format": CACHE_FORMAT, "model_sha256": model_sha256, "threshold": float(threshold), "sources": sources}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return {
        **body,
        "samples": sum(len(s["frames"]) for s in sources),
        "hash": hashlib.sha256(canonical.encode()).hexdigest(),
    }


class RecordingBackend:
    """Passes calls through to a backend and keeps a copy of the inputs when :attr:`record` is set."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.metadata: ModelMetadata = inner.metadata
        self.name = f"recording[{inner.name}]"
        self.record = False
        self.recorded: list[dict[str, NDArray[np.float32]]] = []

    def run(self, inputs: Mapping[str, NDArray[np.float32]]) -> dict[str, NDArray[np.float32]]:
        if self.record:
            self.recorded.append({k: np.array(inputs[k], dtype=np.float32) for k in contract.INPUT_NAMES})
        return self.inner.run(inputs)

    def close(self) -> None:
        self.inner.close()


def _collect_sequence(
    recorder: RecordingBackend, seq: TrackSequence, frames: list[int], threshold: float, progress: Progress | None
) -> tuple[NDArray[np.float32], list[NDArray[np.float32]]]:
    tracker = Tracker(recorder, threshold=threshold)
    wanted = set(frames)
    recorder.recorded.clear()
    total = frames[-1] + 1
    for index, frame in seq.frames(limit=frames[-1] + 1):
        if index == 0:
            tracker.initialize(frame, seq.boxes[0])
        else:
            recorder.record = index in wanted
            tracker.track(frame)
            recorder.record = False
        if progress is not None:
            progress(1, total)
    if len(recorder.recorded) != len(frames):
        raise InputError(f"{seq.name}: only {len(recorder.recorded)} of the planned {len(frames)} frames could be read")
    template = recorder.recorded[0][contract.TEMPLATE][0]
    return template, [r[contract.SEARCH][0] for r in recorder.recorded]


def collect(
    backend: Backend,
    sequences: Sequence[TrackSequence],
    plan: Mapping[str, list[int]],
    manifest: Mapping[str, Any],
    progress: Progress | None = None,
) -> CalibrationSet:
    """Track every planned sequence with the FP32 ``backend`` and keep the planned frames' inputs."""
    threshold = float(manifest["threshold"])
    recorder = RecordingBackend(backend)
    templates, search, index = [], [], []
    for seq in sequences:
        if seq.name not in plan:
            continue
        template, crops = _collect_sequence(recorder, seq, plan[seq.name], threshold, progress)
        index.extend([len(templates)] * len(crops))
        templates.append(template)
        search.extend(crops)
    if not search:
        raise InputError("no calibration samples were collected; give sequences with at least 2 frames")
    return CalibrationSet(
        templates=np.stack(templates),
        search=np.stack(search),
        template_index=np.asarray(index, dtype=np.int32),
        threshold=threshold,
        manifest=dict(manifest),
    )


def cache_paths(cache_dir: str | Path, manifest_hash: str) -> tuple[Path, Path]:
    stem = Path(cache_dir) / f"crops-{manifest_hash[:16]}"
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def save(calib: CalibrationSet, cache_dir: str | Path) -> Path:
    """Write the arrays, then the manifest (atomically, so a manifest always has its arrays)."""
    data_path, manifest_path = cache_paths(cache_dir, calib.hash)
    with atomic_path(data_path) as tmp:
        np.savez(tmp, templates=calib.templates, search=calib.search, template_index=calib.template_index)
    atomic_write_text(manifest_path, json.dumps(dict(calib.manifest), indent=1, sort_keys=True))
    return data_path


def load_cached(cache_dir: str | Path, manifest: Mapping[str, Any]) -> CalibrationSet | None:
    """The cached set for this manifest, or None on a miss (absent, other hash, unreadable arrays)."""
    data_path, manifest_path = cache_paths(cache_dir, str(manifest["hash"]))
    if not (data_path.is_file() and manifest_path.is_file()):
        return None
    try:
        stored = json.loads(manifest_path.read_text())
        if stored.get("hash") != manifest["hash"]:
            return None
        with np.load(data_path) as data:
            arrays = {k: data[k] for k in ("templates", "search", "template_index")}
    except (OSError, ValueError, KeyError) as e:
        log.warning("calibration cache %s is unreadable (%s); collecting again", data_path, e)
        return None
    if len(arrays["search"]) != stored.get("samples"):
        return None
    return CalibrationSet(threshold=float(stored["threshold"]), manifest=stored, **arrays)


def load_or_collect(
    backend: Backend,
    sequences: Sequence[TrackSequence],
    *,
    samples: int,
    threshold: float,
    model_sha256: str,
    cache_dir: str | Path | None,
    max_frames: int | None = None,
    progress: Progress | None = None,
) -> tuple[CalibrationSet, bool]:
    """Cached crops when the manifest hash matches, else collect (and cache). Returns (set, cache_hit)."""
    plan = plan_frames(sequences, samples, max_frames)
    manifest = build_manifest(sequences, plan, threshold, model_sha256)
    if cache_dir is not None:
        cached = load_cached(cache_dir, manifest)
        if cached is not None:
            return cached, True
    calib = collect(backend, sequences, plan, manifest, progress)
    if cache_dir is not None:
        save(calib, cache_dir)
    return calib, False
