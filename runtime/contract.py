"""The exported model's I/O contract: names, dtypes and shapes as functions of the tracker parameters.

Every input and output leads with the batch: one row per template/search pair. A batch-N model takes N pairs
per call (ModelMetadata.batch); pairs never interact, so row i of every output belongs to row i of the inputs.

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


def input_shapes(params: TrackerParams, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """Input shapes for ``batch`` template/search pairs: template [B,3,T,T], search [B,3,S,S], threshold [B]
    (one division threshold per pair)."""
    t, s = params.template_size, params.search_size
    return {TEMPLATE: (batch, 3, t, t), SEARCH: (batch, 3, s, s), THRESHOLD: (batch,)}


def template_mask_shape(params: TrackerParams, batch: int = 1) -> tuple[int, ...]:
    """Shape of the optional ``template_mask`` input: [B, Nz], Nz = template cells."""
    return (batch, params.template_feat_size**2)


def output_shapes(params: TrackerParams, depth: int | None = None, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """Output shapes for ``batch`` pairs; ``decisions`` [B, depth-1, Nx] (1 = search token joins the template)
    if depth given."""
    f, b = params.feat_size, batch
    shapes: dict[str, tuple[int, ...]] = {SCORE_MAP: (b, 1, f, f), SIZE_MAP: (b, 2, f, f), OFFSET_MAP: (b, 2, f, f)}
    if depth is not None:
        shapes[DECISIONS] = (b, depth - 1, f * f)
    return shapes
