"""The exported model's I/O contract: names, dtypes and shapes as functions of the tracker parameters.

The export package builds its graphs from these names, and every runtime backend checks them.
"""

from __future__ import annotations

from grm.runtime.params import TrackerParams

TEMPLATE = "template"
SEARCH = "search"
THRESHOLD = "threshold"
# Optional (B, Nz) template box mask, read only by roimax/roiavg models; backends ignore inputs they lack.
TEMPLATE_MASK = "template_mask"
SCORE_MAP = "score_map"
SIZE_MAP = "size_map"
OFFSET_MAP = "offset_map"
DECISIONS = "decisions"

INPUT_NAMES: tuple[str, ...] = (TEMPLATE, SEARCH, THRESHOLD)
OUTPUT_NAMES: tuple[str, ...] = (SCORE_MAP, SIZE_MAP, OFFSET_MAP)
OPTIONAL_OUTPUT_NAMES: tuple[str, ...] = (DECISIONS,)


def input_shapes(params: TrackerParams) -> dict[str, tuple[int, ...]]:
    """Static input shapes: template [1,3,T,T], search [1,3,S,S], threshold [1]."""
    t, s = params.template_size, params.search_size
    return {TEMPLATE: (1, 3, t, t), SEARCH: (1, 3, s, s), THRESHOLD: (1,)}


def output_shapes(params: TrackerParams, depth: int | None = None) -> dict[str, tuple[int, ...]]:
    """Static output shapes; ``decisions`` [1, depth-1, Nx] (1 = search token joins the template) if depth given."""
    f = params.feat_size
    shapes = {SCORE_MAP: (1, 1, f, f), SIZE_MAP: (1, 2, f, f), OFFSET_MAP: (1, 2, f, f)}
    if depth is not None:
        shapes[DECISIONS] = (1, depth - 1, f * f)
    return shapes
