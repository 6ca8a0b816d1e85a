"""The ``grm`` metadata record inside exported ONNX files: build it, write it, read it back.

The record is :class:`grm.runtime.params.ModelMetadata` as JSON under ``metadata_props`` key
:data:`grm.runtime.params.METADATA_KEY`; ONNX Runtime exposes it as ``custom_metadata_map``, so the runtime
needs nothing but the model file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from grm.runtime.errors import ArtifactMismatchError
from grm.runtime.params import METADATA_KEY, ModelMetadata
from grm.runtime.version import __version__
from grm.train.config import GrmConfig

PRECISIONS = ("fp32", "fp16")


def build_metadata(
    config: GrmConfig,
    *,
    precision: str,
    opset: int,
    checkpoint_sha256: str,
    outputs_masks: bool,
    extra: dict[str, Any] | None = None,
    batch: int = 1,
) -> ModelMetadata:
    """Everything the runtime needs to track with the exported model, plus where it came from; ``batch`` is the
    model's leading dimension (0 = dynamic)."""
    if precision not in PRECISIONS:
        raise ArtifactMismatchError(f"precision {precision!r} is not one of {PRECISIONS}")
    return ModelMetadata(
        config=config.name,
        tracker=config.tracker,
        precision=precision,
        opset=opset,
        package_version=__version__,
        checkpoint_sha256=checkpoint_sha256,
        outputs_masks=outputs_masks,
        depth=config.model.depth,
        batch=batch,
        extra=dict(extra or {}),
    )


def write_metadata(model: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Store ``metadata`` in ``model.metadata_props`` under the ``grm`` key, replacing an older record."""
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = metadata.to_json()


def read_metadata(model: onnx.ModelProto | str | Path) -> ModelMetadata:
    """The ``grm`` record of a model (a path is read without its external weights).

    Raises:
        ArtifactMismatchError: the model carries no ``grm`` record (not exported by grm-export).
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return ModelMetadata.from_json(prop.value)
    raise ArtifactMismatchError(
        f"the ONNX model has no '{METADATA_KEY}' metadata; it was not written by grm-export, re-export it with grm-export"
    )
