"""INT8 vs FP32 network time on ONNX Runtime CPU, measured in the same process on the same crops.

The two models are timed *interleaved* (FP32, INT8, then INT8, FP32, ...: the order flips every step) so
that load from other processes on a shared machine hits both alike; the ratio of medians is reported, with
the spread (10th-90th percentile) of the per-step ratios as the noise of the run, and the CPU's instruction
sets (:mod:`grm.runtime.cpu_features`), which decide the INT8 speed-up. A per-op-type profile (ONNX Runtime's profiler)
shows where the time goes: which ops run as INT8 kernels after ONNX Runtime fuses the Q/DQ pairs
(``QLinearConv``, ``MatMulIntegerToFloat``, ``QGemm``, ...) and which stay FP32.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray

from grm.calibration.collect import CalibrationSet
from grm.runtime.backends import open_model
from grm.runtime.backends.io_check import parse_metadata
from grm.runtime.backends.ort import import_onnxruntime, session_options
from grm.runtime.cpu_features import cpu_features
from grm.runtime.params import METADATA_KEY, ModelMetadata

Feed = Mapping[str, NDArray[np.float32]]


@dataclass(frozen=True)
class SpeedResult:
    """Median network time per frame (ms) of both models and where the INT8 time goes.

    Attributes:
        profile_fp32, profile_int8: op type -> ms per frame (ONNX Runtime profiler, optimised graph).
        step_ratio: 10th, 50th and 90th percentile of FP32/INT8 over the interleaved steps (the noise).
        cpu: :meth:`grm.runtime.cpu_features.CpuFeatures.summary` of the machine.
        target: the INT8 model's form (``tensorrt``/``cpu`` from its metadata; empty when not recorded).
    """

    fp32_ms: float
    int8_ms: float
    threads: int | None
    repeats: int
    profile_fp32: Mapping[str, float]
    profile_int8: Mapping[str, float]
    step_ratio: tuple[float, float, float] = (float("nan"),) * 3
    cpu: str = ""
    target: str = ""

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
            "step_ratio_p10_p50_p90": list(self.step_ratio),
            "cpu_features": self.cpu,
            "int8_target": self.target,
            "profile_fp32_ms": dict(self.profile_fp32),
            "profile_int8_ms": dict(self.profile_int8),
        }


def time_steps(
    paths: Sequence[str | Path], feeds: Sequence[Feed], threads: int | None, warmup: int = 2, repeats: int = 10
) -> list[list[float]]:
    """Milliseconds of every timed network call, per model; each step runs every model once, in an order that
    flips every step so neither model always follows the other."""
    backends = [open_model(p, backend="onnxruntime", threads=threads) for p in paths]
    try:
        times: list[list[float]] = [[] for _ in backends]
        for step in range(warmup + repeats):
            feed = feeds[step % len(feeds)]
            order = range(len(backends)) if step % 2 == 0 else range(len(backends) - 1, -1, -1)
            for i in order:
                t0 = time.perf_counter()
                backends[i].run(feed)
                if step >= warmup:
                    times[i].append((time.perf_counter() - t0) * 1000.0)
        return times
    finally:
        for backend in backends:
            backend.close()


def time_interleaved(
    paths: Sequence[str | Path], feeds: Sequence[Feed], threads: int | None, warmup: int = 2, repeats: int = 10
) -> list[float]:
    """Median milliseconds per network call of each model, calls interleaved model by model."""
    return [statistics.median(t) for t in time_steps(paths, feeds, threads, warmup, repeats)]


def step_ratios(base: Sequence[float], other: Sequence[float]) -> tuple[float, float, float]:
    """10th, 50th, 90th percentile of ``base[i] / other[i]`` over the steps (the same step's two calls)."""
    ratios = np.asarray(base, dtype=np.float64) / np.asarray(other, dtype=np.float64)
    p10, p50, p90 = np.percentile(ratios, [10, 50, 90])
    return float(p10), float(p50), float(p90)


def _metadata(path: str | Path) -> ModelMetadata:
    model = onnx.load(str(path), load_external_data=False)
    return parse_metadata(next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None), str(path))


def model_target(path: str | Path) -> str:
    """The INT8 form recorded in a model's metadata (``extra.calibration.target``), or ``""``."""
    return str(_metadata(path).extra.get("calibration", {}).get("target", ""))


def profile_op_types(path: str | Path, feeds: Sequence[Feed], threads: int | None, runs: int = 3) -> dict[str, float]:
    """Milliseconds per call spent in each op type of the optimised graph, sorted by time."""
    ort = import_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="grm-profile-") as tmp:
        opts = session_options(ort, threads)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        rows = _metadata(path).batch or 1  # feeds hold one crop; a static batch-N model takes it N times
        for i in range(runs + 1):
            feed = feeds[i % len(feeds)]
            session.run(None, {k: np.repeat(v, rows, axis=0) for k, v in feed.items() if k in names})
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
    times = time_steps([fp32, int8], feeds, threads, repeats=repeats)
    profiles = [profile_op_types(p, feeds, threads) if profile else {} for p in (fp32, int8)]
    return SpeedResult(
        statistics.median(times[0]), statistics.median(times[1]), threads, repeats, profiles[0], profiles[1],
        step_ratios(times[0], times[1]), cpu_features().summary(), model_target(int8),
    )  # fmt: skip


def compare_models(
    paths: Sequence[str | Path], feeds: Sequence[Feed], threads: int | None, repeats: int
) -> list[dict[str, Any]]:
    """Every model timed interleaved with the others; ratios against the first (the FP32 model)."""
    times = time_steps(paths, feeds, threads, repeats=repeats)
    rows = []
    for path, t in zip(paths, times, strict=True):
        meta = _metadata(path)
        target = meta.extra.get("calibration", {}).get("target", "")
        rows.append({
            "model": Path(path).name, "precision": meta.precision + (f" ({target} form)" if target else ""),
            "median_ms": statistics.median(t), "speedup": statistics.median(times[0]) / statistics.median(t),
            "step_ratio_p10_p50_p90": step_ratios(times[0], t),
        })  # fmt: skip
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]], threads: int | None, repeats: int) -> str:
    """The rows of :func:`compare_models` as a markdown table, with the CPU and the timing protocol."""
    lines = [
        f"CPU: {cpu_features().summary()}; ONNX Runtime {import_onnxruntime().__version__} CPU, "
        f"{threads or 'default'} thread{'' if threads == 1 else 's'}, median of {repeats} interleaved calls per model.",
        "",
        "| model | precision | median ms | speed-up vs first | per-step speed-up p10 / p50 / p90 |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        p10, p50, p90 = r["step_ratio_p10_p50_p90"]
        lines.append(f"| {r['model']} | {r['precision']} | {r['median_ms']:.1f} | {r['speedup']:.2f}x | "
                     f"{p10:.2f} / {p50:.2f} / {p90:.2f} |")  # fmt: skip
    return "\n".join(lines)


def load_feeds(crops: str | Path, count: int = 8) -> list[Feed]:
    """Network inputs from a grm-calibrate crop cache (``crops-<hash>.npz`` + its ``.json`` manifest)."""
    crops = Path(crops)
    manifest = json.loads(crops.with_suffix(".json").read_text())
    with np.load(crops) as data:
        arrays = {k: data[k] for k in ("templates", "search", "template_index")}
    calib = CalibrationSet(threshold=float(manifest["threshold"]), manifest=manifest, **arrays)
    return [calib.feed(i) for i in range(min(count, len(calib)))]


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m grm.calibration.speed --crops C.npz --threads 2 --repeats 30 FP32.onnx INT8.onnx ...``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m grm.calibration.speed", description=main.__doc__)
    parser.add_argument("models", nargs="+", type=Path, help="FP32 model first, then the INT8 models")
    parser.add_argument("--crops", type=Path, required=True, help="crops-<hash>.npz from a grm-calibrate cache")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    rows = compare_models(args.models, load_feeds(args.crops), args.threads, args.repeats)
    sys.stdout.write(markdown_table(rows, args.threads, args.repeats) + "\n")


if __name__ == "__main__":
    main()
