"""One-pass accuracy of in-memory tracking results for the INT8 report.

Scoring is :func:`grm.benchmarks.metrics.score_boxes` (pytracking protocol, benchmarks/PROTOCOLS.md): frame 0 is the
ground truth, IoU uses inclusive pixel corners, frames with invalid ground truth are left out, sequences
weigh equally.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from numpy.typing import ArrayLike

from grm.benchmarks.metrics import score_boxes


def auc_and_precision(preds: Sequence[ArrayLike], gts: Sequence[ArrayLike]) -> tuple[float, float]:
    """(success AUC, precision @ 20 px) in percent; NaN when there is no sequence."""
    if not preds:
        return math.nan, math.nan
    summary = score_boxes(list(preds), list(gts))  # type: ignore[arg-type]
    return summary.auc, summary.precision
