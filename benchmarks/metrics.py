"""Benchmark metrics in pure numpy: per-frame errors, per-sequence curves, dataset summaries.

Boxes are xywh in pixels (N, 4). Two protocols score them (see ``benchmarks/PROTOCOLS.md``):

- ``pytracking``: the rules of the PyTracking analysis that GRM's paper used for UAV123, NfS, AVisT
  (frame 0 forced to the ground truth, inclusive-pixel IoU, per-dataset invalid-frame rules);
- ``otb``: the OTB toolkit (``calcSeqErrRobust``/``perfPlot``), which also underlies the LaSOT toolkit.

GOT-10k's AO/SR follow the GOT-10k toolkit (continuous IoU clipped to the image, frame 0 excluded, frames
with the target absent excluded, frames of all sequences pooled). Speed has two definitions, both named in
reports: :data:`FPS_DEFINITION` (throughput of tracked frames) and the toolkit's :data:`GOT10K_FPS_DEFINITION`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from grm.runtime.errors import InputError

Array = NDArray[np.float64]


def _pytracking_overlap() -> Array:
    """The 21 overlap thresholds PyTracking gets from ``torch.arange(0.0, 1.05, 0.05, dtype=float64)``.

    PyTorch's vectorised CPU kernel returns, on x86-64, the double one ulp above ``i / 20`` at
    i = 3, 6, 7, 12, 13, 14, 15, 17, 19 (0.15, 0.3, 0.35, 0.6, 0.65, 0.7, 0.75, 0.85, 0.95). An IoU of
    exactly 0.75 (3/4, common with integer boxes) is therefore not a success at 0.75 under PyTracking.
    """
    values = np.arange(21) / 20.0
    above = [3, 6, 7, 12, 13, 14, 15, 17, 19]
    values[above] = np.nextafter(values[above], np.inf)
    return values


def matlab_colon(start: float, step: float, stop: float) -> Array:
    """MATLAB's ``start:step:stop``: the first half counts up from ``start``, the second down from the end."""
    n = int(round((stop - start) / step))
    end = start + n * step
    values = np.empty(n + 1)
    k = np.arange(n // 2 + 1)
    values[k] = start + k * step
    values[n - k] = end - k * step
    if n % 2 == 0:
        values[n // 2] = (start + end) / 2
    return values


PYTRACKING_OVERLAP = _pytracking_overlap()
PYTRACKING_NORM = np.arange(51) / 100.0
OTB_OVERLAP = matlab_colon(0.0, 0.05, 1.0)
OTB_NORM = np.arange(51) / 100.0
CENTER_THRESHOLDS = np.arange(51, dtype=np.float64)


@dataclass(frozen=True)
class ScoringRules:
    """Per-dataset treatment of invalid frames under the ``pytracking`` protocol (benchmarks/PROTOCOLS.md)."""

    nan_gt_allowed: bool = False
    invalid_center: float = np.inf
    invisible_center_inf: bool = False
    strict_length: bool = False
    valid_needs_all_positive: bool = False
    denominator_all_frames: bool = False


RULES: dict[str, ScoringRules] = {
    "uav": ScoringRules(nan_gt_allowed=True, invalid_center=-1.0),
    "lasot": ScoringRules(invisible_center_inf=True, strict_length=True),
    "avist": ScoringRules(valid_needs_all_positive=True, denominator_all_frames=True),
}


def rules_for(tag: str) -> ScoringRules:
    return RULES.get(tag, ScoringRules())


@dataclass(frozen=True)
class FrameErrors:
    """Per-frame errors of one sequence; invalid frames carry the protocol's sentinel values."""

    iou: Array
    center: Array
    center_norm: Array
    valid: NDArray[np.bool_]
    denominator: int


def iou_inclusive(a: Array, b: Array) -> Array:
    """IoU with the toolkits' inclusive pixel corners: right = x + w - 1, intersection side + 1."""
    tl = np.maximum(a[:, :2], b[:, :2])
    br = np.minimum(a[:, :2] + a[:, 2:] - 1.0, b[:, :2] + b[:, 2:] - 1.0)
    inter = np.prod(np.clip(br - tl + 1.0, 0.0, None), axis=1)
    union = np.prod(a[:, 2:], axis=1) + np.prod(b[:, 2:], axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def center_errors(pred: Array, gt: Array) -> tuple[Array, Array]:
    """Centre distance in pixels and in units of the ground-truth size (centre = xy + (wh - 1) / 2)."""
    pc = pred[:, :2] + 0.5 * (pred[:, 2:] - 1.0)
    gc = gt[:, :2] + 0.5 * (gt[:, 2:] - 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.sqrt(((pc - gc) ** 2).sum(axis=1))
        norm = np.sqrt(((pc / gt[:, 2:] - gc / gt[:, 2:]) ** 2).sum(axis=1))
    return err, norm


def _as_boxes(boxes: Array, what: str) -> Array:
    arr = np.array(boxes, dtype=np.float64, copy=True)
    if arr.ndim != 2 or arr.shape[1] != 4 or len(arr) == 0:
        raise InputError(f"{what} must be a non-empty (N, 4) array of x,y,w,h boxes; got shape {arr.shape}")
    return arr


def _fit_length(pred: Array, n: int, strict: bool, where: str) -> Array:
    if len(pred) == n:
        return pred
    if len(pred) > n:
        return pred[:n]
    if strict:
        raise InputError(f"{where}: {len(pred)} result rows for {n} annotated frames; the run looks incomplete")
    return np.concatenate([pred, np.zeros((n - len(pred), 4))])


def pytracking_errors(
    pred: Array, gt: Array, tag: str, visible: NDArray[np.bool_] | None = None, where: str = "sequence"
) -> FrameErrors:
    """Per-frame errors under the PyTracking rules for dataset ``tag`` (``uav``, ``lasot``, ``avist``, ...)."""
    rules = rules_for(tag)
    pred, gt = _as_boxes(pred, f"{where} result"), _as_boxes(gt, f"{where} ground truth")
    if np.isnan(pred).any() or (pred[:, 2:] < 0).any():
        raise InputError(f"{where}: result contains NaN or a negative width/height; fix or re-run the tracker")
    if np.isnan(gt).any() and not rules.nan_gt_allowed:
        raise InputError(f"{where}: ground truth contains NaN, which only UAV123 allows")
    m = min(len(pred), len(gt))
    zero = (pred[:m, 2:] == 0).any(axis=1) & ~np.isnan(gt[:m]).any(axis=1)
    _hold_previous(pred, np.flatnonzero(zero[1:]) + 1)
    pred = _fit_length(pred, len(gt), rules.strict_length, where)
    pred[0] = gt[0]
    valid = (gt > 0).all(axis=1) if rules.valid_needs_all_positive else (gt[:, 2:] > 0).all(axis=1)
    if visible is not None:
        valid &= _visibility(visible, len(gt), where)
    iou = iou_inclusive(pred, gt)
    center, norm = center_errors(pred, gt)
    iou[~valid], center[~valid], norm[~valid] = -1.0, rules.invalid_center, -1.0
    if rules.invisible_center_inf and visible is not None:
        center[~visible], norm[~visible] = np.inf, np.inf
    if np.isnan(iou).any():
        raise InputError(f"{where}: IoU is NaN on a valid frame; check the result boxes")
    denominator = len(gt) if rules.denominator_all_frames else int(valid.sum())
    if denominator <= 0:
        raise InputError(f"{where}: no valid annotated frame to score")
    return FrameErrors(iou, center, norm, valid, denominator)


def _hold_previous(pred: Array, rows: NDArray[np.intp]) -> None:
    """Replace each listed row (ascending, >= 1) by the row before it, as already replaced."""
    for i in rows:
        pred[i] = pred[i - 1]


def _visibility(visible: NDArray[np.bool_], n: int, where: str) -> NDArray[np.bool_]:
    visible = np.asarray(visible, dtype=bool)
    if visible.shape != (n,):
        raise InputError(f"{where}: {visible.shape[0]} visibility flags for {n} annotated frames")
    return visible


def otb_errors(
    pred: Array, gt: Array, visible: NDArray[np.bool_] | None = None, where: str = "sequence"
) -> FrameErrors:
    """Per-frame errors under the OTB toolkit rules.

    Result rows with NaN or non-positive size take the previous row (where the ground-truth row has no NaN),
    frame 0 takes the ground truth, frames whose ground truth is not all-positive score IoU -1 (failure) and
    centre error -1 (a precision hit, as the toolkit's ``errCenter(~idx) = -1``), frames past the end of a
    short result are failures, and every annotated frame counts in the denominator. With visibility flags
    (LaSOT toolkit), frames without the target are failures in both curves.
    """
    pred, gt = _as_boxes(pred, f"{where} result"), _as_boxes(gt, f"{where} ground truth")
    n, m = len(gt), min(len(pred), len(gt))
    pred = np.concatenate([pred[:m], np.full((n - m, 4), np.nan)])
    with np.errstate(invalid="ignore"):
        bad_size = (pred[:m, 2] <= 0) | (pred[:m, 3] <= 0)
        # MATLAB's ``if`` on a vector: true only if every element of (isnan(r) | bad size) & ~isnan(anno) is
        bad = np.all((np.isnan(pred[:m]) | bad_size[:, None]) & ~np.isnan(gt[:m]), axis=1)
        _hold_previous(pred, np.flatnonzero(bad[1:]) + 1)
        pred[0] = gt[0]
        valid = (gt > 0).all(axis=1)
        iou = np.where(valid, iou_inclusive(pred, gt), -1.0)
        center, norm = center_errors(pred, gt)
    center[~valid], norm[~valid] = -1.0, -1.0
    missing = np.arange(n) >= m
    if visible is not None:
        missing |= ~_visibility(visible, n, where)
    iou[missing], center[missing], norm[missing] = -1.0, np.inf, np.inf
    return FrameErrors(iou, center, norm, valid, n)


@dataclass(frozen=True)
class Curves:
    """Per-sequence success, precision and normalised-precision curves (fractions) and mean IoU."""

    success: Array
    precision: Array
    norm_precision: Array
    ao: float


def sequence_curves(errors: FrameErrors, overlap: Array, norm: Array) -> Curves:
    """Success = IoU > t (strict); precision = error <= t; each divided by the protocol's denominator."""
    d = float(errors.denominator)
    with np.errstate(invalid="ignore"):
        success = (errors.iou[:, None] > overlap[None, :]).sum(axis=0) / d
        precision = (errors.center[:, None] <= CENTER_THRESHOLDS[None, :]).sum(axis=0) / d
        norm_precision = (errors.center_norm[:, None] <= norm[None, :]).sum(axis=0) / d
    ious = errors.iou[errors.valid]
    ao = float(ious.mean()) if len(ious) else float("nan")
    return Curves(success, precision, norm_precision, ao)


@dataclass(frozen=True)
class Summary:
    """Dataset-level scores in percent, from per-sequence curves averaged uniformly over sequences."""

    auc: float
    op50: float
    op75: float
    precision: float
    norm_precision: float
    success_curve: Array
    precision_curve: Array
    norm_precision_curve: Array
    sequences: int

    def as_dict(self) -> dict[str, float]:
        return {
            "AUC": self.auc,
            "OP50": self.op50,
            "OP75": self.op75,
            "Prec": self.precision,
            "NormPrec": self.norm_precision,
        }


def summarize(curves: Sequence[Curves], overlap: Array) -> Summary:
    """AUC = mean of the averaged 21-point success curve; OP50/OP75 at 0.5/0.75; precision at 20 px / 0.20."""
    if not curves:
        raise InputError("no sequence to summarise")
    success = np.mean([c.success for c in curves], axis=0)
    precision = np.mean([c.precision for c in curves], axis=0)
    norm = np.mean([c.norm_precision for c in curves], axis=0)
    i50, i75 = int(np.argmin(np.abs(overlap - 0.5))), int(np.argmin(np.abs(overlap - 0.75)))
    return Summary(
        auc=float(success.mean() * 100),
        op50=float(success[i50] * 100),
        op75=float(success[i75] * 100),
        precision=float(precision[20] * 100),
        norm_precision=float(norm[20] * 100),
        success_curve=success,
        precision_curve=precision,
        norm_precision_curve=norm,
        sequences=len(curves),
    )


def score_boxes(
    preds: Sequence[Array],
    gts: Sequence[Array],
    tag: str = "default",
    visible: Sequence[NDArray[np.bool_] | None] | None = None,
) -> Summary:
    """Scores in percent of in-memory one-pass results under the ``pytracking`` rules of dataset ``tag``.

    For callers that hold boxes rather than result folders (training validation, INT8 reports); sequences
    weigh equally. ``visible`` gives per-sequence target visibility where the data has it.
    """
    vis = visible if visible is not None else [None] * len(preds)
    curves = [
        sequence_curves(pytracking_errors(p, g, tag, v, where=f"sequence {i}"), PYTRACKING_OVERLAP, PYTRACKING_NORM)
        for i, (p, g, v) in enumerate(zip(preds, gts, vis, strict=True))
    ]
    return summarize(curves, PYTRACKING_OVERLAP)


def rect_iou_bounded(a: Array, b: Array, bound: tuple[int, int] | None = None) -> Array:
    """GOT-10k toolkit IoU: continuous corners, both boxes clipped to the (width, height) image first."""
    a, b = np.array(a, dtype=np.float64), np.array(b, dtype=np.float64)
    if bound is not None:
        for r in (a, b):
            r[:, 0] = np.clip(r[:, 0], 0, bound[0])
            r[:, 1] = np.clip(r[:, 1], 0, bound[1])
            r[:, 2] = np.clip(r[:, 2], 0, bound[0] - r[:, 0])
            r[:, 3] = np.clip(r[:, 3], 0, bound[1] - r[:, 1])
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)


def got10k_ious(
    pred: Array,
    gt: Array,
    cover: Array | None = None,
    resolution: tuple[int, int] | None = None,
    where: str = "sequence",
) -> Array:
    """IoUs the GOT-10k toolkit scores: frames 1.. (frame 0 excluded) where the target is visible (cover > 0)."""
    pred, gt = _as_boxes(pred, f"{where} result"), _as_boxes(gt, f"{where} ground truth")
    if pred.shape != gt.shape:
        raise InputError(
            f"{where}: {len(pred)} result rows for {len(gt)} annotated frames; GOT-10k needs one per frame"
        )
    ious = rect_iou_bounded(pred[1:], gt[1:], resolution)
    if cover is not None:
        ious = ious[np.asarray(cover)[1:] > 0]
    return ious


def got10k_scores(ious: Array) -> dict[str, float]:
    """AO, SR0.50 and SR0.75 in percent of the given frame IoUs; NaN when there is none (target always absent).

    Scored on one sequence's IoUs this is the toolkit's per-sequence ``ao`` and ``sr`` (x 100); SR0.75 is its
    success curve at threshold 0.75.
    """
    ious = np.asarray(ious, dtype=np.float64)
    if len(ious) == 0:
        return {"AO": float("nan"), "SR50": float("nan"), "SR75": float("nan")}
    return {
        "AO": float(ious.mean() * 100),
        "SR50": float((ious > 0.5).mean() * 100),
        "SR75": float((ious > 0.75).mean() * 100),
    }


def got10k_summary(ious: Sequence[Array]) -> dict[str, float]:
    """AO, SR0.50 and SR0.75 in percent over the frames of all sequences pooled (GOT-10k toolkit)."""
    pooled = np.concatenate([np.asarray(i, dtype=np.float64) for i in ious]) if ious else np.empty(0)
    if len(pooled) == 0:
        raise InputError("no GOT-10k frame to score")
    return got10k_scores(pooled)


FPS_DEFINITION = "frames after the first / their summed per-frame tracking seconds (initialisation excluded)"
GOT10K_FPS_DEFINITION = (
    "GOT-10k toolkit: mean of 1 / per-frame seconds over every frame, the first (initialisation) included, "
    "frames of all sequences pooled; NaN and non-positive times dropped"
)


def throughput_fps(times: Sequence[Array]) -> float | None:
    """Frames per second as :data:`FPS_DEFINITION` from per-sequence per-frame seconds; None without timed frames."""
    frames = sum(max(len(t) - 1, 0) for t in times)
    seconds = float(sum(np.asarray(t, dtype=np.float64)[1:].sum() for t in times))
    return frames / seconds if frames and seconds > 0 else None


def got10k_fps(times: Sequence[Array]) -> float | None:
    """Frames per second as :data:`GOT10K_FPS_DEFINITION` (the GOT-10k toolkit's ``speed_fps``); None without times."""
    pooled = np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in times]) if times else np.empty(0)
    pooled = pooled[~np.isnan(pooled)]
    pooled = pooled[pooled > 0]
    return float(np.mean(1.0 / pooled)) if len(pooled) else None
