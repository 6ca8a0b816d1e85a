"""INT8 vs FP32 network time on ONNX Runtime CPU, measured in the same process on the same crops.

The two models are timed *interleaved* (FP32, INT8, FP32, ...) so that load from other processes on a shared
machine hits both alike; the ratio of medians is reported. A per-op-type profile (ONNX Runtime's profiler)
shows where the time goes: which ops run as INT8 kernels after ONNX Runtime fuses the Q/DQ pairs
(``QLinearConv``, ``MatMulIntegerToFloat``, ``QGemm``, ...) and which stay FP32.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from grm.runtime.backends import open_model
from grm.runtime.backends.ort import import_onnxruntime, session_options

Feed = Mapping[str, NDArray[np.float32]]


@dataclass(frozen=True)
class SpeedResult:
    """Median network time per frame (ms) of both models and where the INT8 time goes.

    Attributes:
        profile_fp32, profile_int8: op type -> ms per frame (ONNX Runtime profiler, optimised graph).
    """

    fp32_ms: float
    int8_ms: float
    threads: int | None
    repeats: int
    profile_fp32: Mapping[str, float]
    profile_int8: Mapping[str, float]

    @property
    def ratio(self) -> float:
        """FP32 time / INT8 time (> 1 means INT8 is faster)."""
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "fp32_ms": self.fp32_ms,
            "int8_ms": self.int8_ms,
            "speedup": self.ratio,
            "threads": self.threads,
            "repeats": self.repeats,
            "profile_fp32_ms": dict(self.profile_fp32),
            "profile_int8_ms": dict(self.profile_int8),
        }


def time_interleaved(
    paths: Sequence[str | Path], feeds: Sequence[Feed], threads: int | None, warmup: int = 2, repeats: int = 10
) -> list[float]:
    """Median milliseconds per network call of each model, calls interleaved model by model."""
    backends = [open_model(p, backend="onnxruntime", threads=threads) for p in paths]
    try:
        times: list[list[float]] = [[] for _ in backends]
        for step in range(warmup + repeats):
            feed = feeds[step % len(feeds)]
            for i, backend in enumerate(backends):
                t0 = time.perf_counter()
                backend.run(feed)
                if step >= warmup:
                    times[i].append((time.perf_counter() - t0) * 1000.0)
        return [statistics.median(t) for t in times]
    finally:
        for backend in backends:
            backend.close()


def profile_op_types(path: str | Path, feeds: Sequence[Feed], threads: int | None, runs: int = 3) -> dict[str, float]:
    """Milliseconds per call spent in each op type of the optimised graph, sorted by time."""
    ort = import_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="grm-profile-") as tmp:
        opts = session_options(ort, threads)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        for i in range(runs + 1):
            session.run(None, {k: v for k, v in feeds[i % len(feeds)].items() if k in names})
        events = json.loads(Path(session.end_profiling()).read_text())
    return _per_op_ms(events, skip_first=True)


def _per_op_ms(events: Sequence[Mapping[str, Any]], skip_first: bool) -> dict[str, float]:
    """Sum kernel time per op type over the profiled runs (the first, warm-up run dropped), per run."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    if skip_first and len(runs) > 1:
        runs = runs[1:]
    per_op: dict[str, float] = {}
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time") or "op_name" not in args:
            continue
        if any(start <= event["ts"] <= end for start, end in runs):
            per_op[args["op_name"]] = per_op.get(args["op_name"], 0.0) + event["dur"] / 1000.0
    count = max(len(runs), 1)
    return dict(sorted(((k, v / count) for k, v in per_op.items()), key=lambda kv: -kv[1]))


def compare_speed(
    fp32: str | Path,
    int8: str | Path,
    feeds: Sequence[Feed],
    threads: int | None = None,
    repeats: int = 10,
    profile: bool = True,
) -> SpeedResult:
    """Time both models interleaved on ``feeds`` (real calibration crops) and profile them."""
    fp32_ms, int8_ms = time_interleaved([fp32, int8], feeds, threads, repeats=repeats)
    profiles = [profile_op_types(p, feeds, threads) if profile else {} for p in (fp32, int8)]
    return SpeedResult(fp32_ms, int8_ms, threads, repeats, profiles[0], profiles[1])
