"""Parity of an exported ONNX model with the PyTorch model, on real crops, at several division thresholds.

Per threshold: max abs error of every map output, per-block agreement of the division decisions, and
agreement of the boxes the tracker would decode (Hann-weighted score map, :mod:`grm.runtime.decode`).
The reference is always the FP32 PyTorch model, so the FP16 figures are "FP16 vs FP32". Tolerances live in
:data:`TOLERANCES`, one row per precision; a report beyond them raises :class:`ParityError`.

A batched model (metadata batch N, or 0 for dynamic) is run N pairs per call (:func:`parity_batch`), each call
mixing crops and thresholds (:func:`mixed_jobs`), and every row is compared with the batch-1 PyTorch model on
that row's own inputs: rows must not leak into each other and each row must honour its own threshold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnxruntime as ort
import torch
from numpy.typing import NDArray
from torch import nn

from grm.export.parity_data import CropPair
from grm.runtime import contract
from grm.runtime.atomic import atomic_write_text
from grm.runtime.backends.io_check import fill_rows
from grm.runtime.backends.trt_build import BatchProfile
from grm.runtime.decode import decode_box, hann2d
from grm.runtime.errors import ParityError
from grm.runtime.geometry import cxcywh_to_xywh, iou_xywh
from grm.runtime.outputs import nan_to_none
from grm.runtime.params import ModelMetadata
from grm.train.model import GRM

DEFAULT_THRESHOLDS = (0.0, 0.4, 0.55, 0.6)  # 0 (argmax rule) and every distinct official preset (docs/tracker.md)
DYNAMIC_PARITY_BATCH = 3
"""Pairs per call for a dynamic-batch model: neither 1 nor a power of two, and the last call comes out shorter."""


@dataclass(frozen=True)
class Tolerance:
    """Limits for one precision: max abs error per output, minimum decision agreement and mean box IoU."""

    max_abs: Mapping[str, float]
    min_decision_agreement: float
    min_mean_iou: float


TOLERANCES: Mapping[str, Tolerance] = MappingProxyType(
    {
        "fp32": Tolerance(
            max_abs=MappingProxyType({contract.SCORE_MAP: 1e-4, contract.SIZE_MAP: 1e-4, contract.OFFSET_MAP: 1e-4}),
            min_decision_agreement=1.0,
            min_mean_iou=0.999,
        ),
        "fp16": Tolerance(
            max_abs=MappingProxyType({contract.SCORE_MAP: 0.05, contract.SIZE_MAP: 0.05, contract.OFFSET_MAP: 0.25}),
            min_decision_agreement=0.99,
            min_mean_iou=0.99,
        ),
    }
)


@dataclass
class ThresholdStats:
    """Agreement at one threshold over all crop pairs; ``cross_share_per_block`` is the reference's share of
    search tokens in the cross group (A) per dividing block, to show the decisions are not degenerate."""

    threshold: float
    max_abs: dict[str, float] = field(default_factory=dict)
    decision_agreement: float | None = None
    decision_agreement_per_block: list[float] = field(default_factory=list)
    cross_share_per_block: list[float] = field(default_factory=list)
    mean_iou: float = 1.0
    min_iou: float = 1.0
    max_box_error: float = 0.0


@dataclass
class ParityReport:
    """Everything measured, the limits applied and the verdict; written as JSON beside the model."""

    model: str
    subject: str
    precision: str
    reference: str
    data_source: str
    pairs: list[str]
    thresholds: list[ThresholdStats]
    tolerance: dict[str, object]
    failures: list[str]
    batch: int = 1
    """Pairs per model call (thresholds mixed within a call when > 1)."""

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> str:
        """Standard JSON: a NaN or infinite error (a diverged model) is null; ``failures`` keep its value."""
        return json.dumps(nan_to_none({**asdict(self), "passed": self.passed}), indent=2, sort_keys=True)

    def summary_lines(self) -> list[str]:
        """A short terminal summary: one line per threshold and the verdict."""
        per_call = f", {self.batch} per call with mixed thresholds" if self.batch > 1 else ""
        lines = [
            f"parity {self.precision} {self.subject} vs {self.reference} on {len(self.pairs)} crop pairs "
            f"from {self.data_source}{per_call}"
        ]
        for s in self.thresholds:
            errs = " ".join(f"{k.removesuffix('_map')} {v:.1e}" for k, v in s.max_abs.items())
            decisions = "n/a"
            if s.decision_agreement is not None:
                decisions = f"{100 * s.decision_agreement:.2f}%"
            if s.cross_share_per_block:
                decisions += f" (A share {100 * float(np.mean(s.cross_share_per_block)):.0f}%)"
            lines.append(
                f"  threshold {s.threshold:<4g} max|err| {errs} | decisions {decisions} "
                f"| box IoU mean {s.mean_iou:.4f} min {s.min_iou:.4f}"
            )
        verdict = "PASS" if self.passed else "FAIL: " + "; ".join(self.failures)
        lines.append(f"  {verdict}")
        return lines


Runner = Callable[[Mapping[str, NDArray[np.generic]]], Mapping[str, NDArray[np.generic]]]
"""Runs an exported model: contract feeds in (it ignores inputs it lacks), named outputs out."""
ONNX_SUBJECT = "ONNX (ONNX Runtime CPU)"


def open_session(path: str | Path | bytes, threads: int = 0) -> ort.InferenceSession:
    """A CPU ONNX Runtime session (``threads`` 0 lets ONNX Runtime choose)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def ort_runner(session: ort.InferenceSession) -> Runner:
    """A :data:`Runner` over an ONNX Runtime session; K pairs on a static batch-N model (K < N) are padded to N
    by repeating the last row, and only the K rows asked for come back."""
    names = [o.name for o in session.get_outputs()]
    rows = {i.name: i.shape[0] if i.shape and isinstance(i.shape[0], int) else None for i in session.get_inputs()}

    def run(feeds: Mapping[str, NDArray[np.generic]]) -> dict[str, NDArray[np.generic]]:
        count = len(feeds[contract.SEARCH])
        padded = {k: _padded(k, v, rows[k], count) for k, v in feeds.items() if k in rows}
        return {n: out[:count] for n, out in zip(names, session.run(None, padded), strict=True)}

    return run


def _padded(name: str, value: NDArray[np.generic], rows: int | None, count: int) -> NDArray[np.generic]:
    if rows is None or rows == len(value):
        return value
    buffer = np.empty((rows, *value.shape[1:]), dtype=value.dtype)
    fill_rows(buffer, value, count, name)
    return buffer


def parity_batch(metadata: ModelMetadata) -> int:
    """Pairs per parity call: a static model's batch; :data:`DYNAMIC_PARITY_BATCH` for a dynamic one (at most
    the recorded TensorRT profile's max)."""
    if not metadata.dynamic_batch:
        return metadata.batch
    profile = BatchProfile.recorded(metadata)
    return min(DYNAMIC_PARITY_BATCH, profile.max) if profile else DYNAMIC_PARITY_BATCH


def mixed_jobs(pairs: int, thresholds: int) -> list[tuple[int, int]]:
    """Every (pair index, threshold index) once, ordered so that neighbours differ in pair and threshold.

    Round r gives pair i threshold (i + r) mod T, so consecutive jobs (one model call takes several) mix
    crops and division thresholds.
    """
    return [(i, (i + r) % thresholds) for r in range(thresholds) for i in range(pairs)]


def compare(
    run: Runner,
    model: GRM,
    pairs: Sequence[CropPair],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    decisions_run: Runner | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 1,
) -> list[ThresholdStats]:
    """Run the exported model and PyTorch on every pair and threshold, both on the tracker's feeds.

    ``batch`` pairs go into each call of ``run`` (in :func:`mixed_jobs` order, the last call possibly shorter);
    each row is compared with the batch-1 PyTorch model on that row's inputs and threshold.
    ``decisions_run`` supplies the decisions when ``run`` has no ``decisions`` output (without either, decision
    agreement is not measured); ``progress`` is called with (pairs done, total pairs). ``model`` runs in eval
    mode and is left in the mode it came in.
    """
    jobs = mixed_jobs(len(pairs), len(thresholds))
    results: dict[tuple[int, int], tuple[Mapping[str, NDArray[np.generic]], Mapping[str, NDArray[np.generic]]]] = {}
    with _eval_mode(model):
        for start in range(0, len(jobs), max(1, batch)):
            chunk = jobs[start : start + max(1, batch)]
            feeds = [pairs[i].feeds(thresholds[t]) for i, t in chunk]
            got = _run_rows(run, decisions_run, feeds)
            for row, ((i, t), feed) in enumerate(zip(chunk, feeds, strict=True)):
                results[i, t] = _reference(model, feed, thresholds[t]), {k: v[row : row + 1] for k, v in got.items()}
            if progress is not None:
                progress(start + len(chunk), len(jobs))
    stats = []
    for t, threshold in enumerate(thresholds):  # accumulated in one fixed order, whatever the batch
        acc = _Accumulator(threshold)
        for i in range(len(pairs)):
            acc.add(*results[i, t])
        stats.append(acc.result())
    return stats


def _run_rows(
    run: Runner, decisions_run: Runner | None, feeds: Sequence[Mapping[str, NDArray[np.float32]]]
) -> dict[str, NDArray[np.generic]]:
    """One model call on the batch-1 ``feeds`` stacked row by row (row k = feeds[k])."""
    stacked = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
    got = dict(run(stacked))
    if contract.DECISIONS not in got and decisions_run is not None:
        got[contract.DECISIONS] = decisions_run(stacked)[contract.DECISIONS]
    return got


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; every submodule's own mode restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _reference(
    model: GRM, feeds: Mapping[str, NDArray[np.float32]], threshold: float
) -> dict[str, NDArray[np.generic]]:
    """The PyTorch model's outputs on the same feeds (``threshold`` as the Python float the model takes)."""
    names = (contract.TEMPLATE, contract.SEARCH, contract.TEMPLATE_MASK)
    template, search, mask = (torch.from_numpy(feeds[k]) for k in names)
    with torch.no_grad():
        out = model(template, search, threshold, mask, return_decisions=True)
    return {
        contract.SCORE_MAP: out.score_map.numpy(),
        contract.SIZE_MAP: out.size_map.numpy(),
        contract.OFFSET_MAP: out.offset_map.numpy(),
        contract.DECISIONS: out.decisions.numpy(),
    }


def tracker_box(outputs: Mapping[str, NDArray[np.generic]]) -> NDArray[np.float32]:
    """The box the tracker decodes (Hann-weighted score), normalised cx, cy, w, h in the search crop."""
    score = outputs[contract.SCORE_MAP][0, 0].astype(np.float32)
    size = outputs[contract.SIZE_MAP][0].astype(np.float32)
    offset = outputs[contract.OFFSET_MAP][0].astype(np.float32)
    box, _ = decode_box(hann2d(score.shape[-1]) * score, size, offset)
    return box


class _Accumulator:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.max_abs = dict.fromkeys(contract.OUTPUT_NAMES, 0.0)
        self.equal: list[NDArray[np.int64]] = []
        self.cross: list[NDArray[np.float64]] = []
        self.ious: list[float] = []
        self.box_errors: list[float] = []

    def add(self, ref: Mapping[str, NDArray[np.generic]], got: Mapping[str, NDArray[np.generic]]) -> None:
        for name in contract.OUTPUT_NAMES:
            err = float(np.max(np.abs(got[name].astype(np.float64) - ref[name].astype(np.float64))))
            self.max_abs[name] = max(self.max_abs[name], err if np.isfinite(err) else float("inf"))
        if contract.DECISIONS in got:
            same = got[contract.DECISIONS].astype(np.int64) == ref[contract.DECISIONS].astype(np.int64)
            self.equal.append(same.reshape(same.shape[1], -1).sum(axis=1))
            self.cross.append(ref[contract.DECISIONS].reshape(same.shape[1], -1).mean(axis=1))
            self.tokens = same.shape[-1]
        box_ref, box_got = tracker_box(ref), tracker_box(got)
        self.ious.append(float(iou_xywh(cxcywh_to_xywh(box_ref), cxcywh_to_xywh(box_got))))
        self.box_errors.append(float(np.max(np.abs(box_ref - box_got))))

    def result(self) -> ThresholdStats:
        stats = ThresholdStats(self.threshold, max_abs=dict(self.max_abs))
        if self.equal:
            per_block = np.sum(self.equal, axis=0) / (len(self.equal) * self.tokens)
            stats.decision_agreement_per_block = [float(v) for v in per_block]
            stats.decision_agreement = float(per_block.mean())
            stats.cross_share_per_block = [float(v) for v in np.mean(self.cross, axis=0)]
        stats.mean_iou, stats.min_iou = float(np.mean(self.ious)), float(np.min(self.ious))
        stats.max_box_error = float(np.max(self.box_errors))
        return stats


def failures(stats: Sequence[ThresholdStats], tolerance: Tolerance) -> list[str]:
    """One message per violated limit, naming the output, the threshold, the value and the limit."""
    found = []
    for s in stats:
        where = f"at threshold {s.threshold:g}"
        for name, limit in tolerance.max_abs.items():
            if not s.max_abs[name] <= limit:
                found.append(f"{name} max abs error {s.max_abs[name]:.3g} > {limit:g} {where}")
        if s.decision_agreement is not None and s.decision_agreement < tolerance.min_decision_agreement:
            found.append(
                f"decisions agree {100 * s.decision_agreement:.3f}% < {100 * tolerance.min_decision_agreement:g}% {where}"
            )
        if s.mean_iou < tolerance.min_mean_iou:
            found.append(f"decoded box mean IoU {s.mean_iou:.4f} < {tolerance.min_mean_iou:g} {where}")
    return found


def build_report(
    model_path: Path,
    precision: str,
    stats: list[ThresholdStats],
    pairs: Sequence[CropPair],
    data_source: str,
    subject: str = ONNX_SUBJECT,
    batch: int = 1,
) -> ParityReport:
    """The report for one exported model; ``subject`` says what ran it (ONNX Runtime CPU, a TensorRT engine),
    ``batch`` how many pairs went into each call."""
    tolerance = TOLERANCES[precision]
    return ParityReport(
        model=str(model_path),
        subject=subject,
        precision=precision,
        reference="PyTorch fp32",
        data_source=data_source,
        pairs=[p.name for p in pairs],
        thresholds=stats,
        tolerance={
            "max_abs": dict(tolerance.max_abs),
            "min_decision_agreement": tolerance.min_decision_agreement,
            "min_mean_iou": tolerance.min_mean_iou,
        },
        failures=failures(stats, tolerance),
        batch=batch,
    )


def report_path(model_path: str | Path) -> Path:
    """``grm_x.onnx`` -> ``grm_x.parity.json``; an engine ``grm_x.plan`` -> ``grm_x.plan.parity.json``."""
    path = Path(model_path)
    if path.suffix == ".onnx":
        return path.with_name(path.stem + ".parity.json")
    return path.with_name(path.name + ".parity.json")


def write_and_check(report: ParityReport) -> Path:
    """Write the JSON report beside the model, then raise if it failed.

    Raises:
        ParityError: names the first violated output and its error; the report lists all of them.
    """
    path = report_path(report.model)
    atomic_write_text(path, report.to_json() + "\n")
    if report.failures:
        more = f" (+{len(report.failures) - 1} more)" if len(report.failures) > 1 else ""
        raise ParityError(
            f"{report.precision} {report.subject} {report.model} disagrees with PyTorch: {report.failures[0]}{more}; "
            f"details in {path}"
        )
    return path
