"""Checks shared by every exported-model backend: metadata parsing and the I/O contract.

A model file is trusted only after its names, static shapes and dtypes match :mod:`grm.runtime.contract`
for the tracker parameters it carries, so a wrong or foreign file fails at load with one clear line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from grm.runtime import contract
from grm.runtime.errors import ArtifactMismatchError, ConfigError
from grm.runtime.params import ModelMetadata

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
DECISION_DTYPES = (*FLOAT_DTYPES, *(np.dtype(t) for t in (np.bool_, np.int8, np.uint8, np.int32, np.int64)))


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the inference engine reports it (shape entries may be None when dynamic)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype
    is_input: bool

    @property
    def static_shape(self) -> tuple[int, ...]:
        """The shape with every entry an int; only for tensors :func:`check_io` accepted (it rejects dynamic ones)."""
        dims = tuple(d for d in self.shape if d is not None)
        if len(dims) != len(self.shape):
            raise ArtifactMismatchError(f"tensor '{self.name}' has dynamic shape {list(self.shape)}")
        return dims

    @property
    def nbytes(self) -> int:
        """Buffer size in bytes of a static tensor."""
        return math.prod(self.static_shape) * self.dtype.itemsize


def parse_metadata(text: str | None, source: str) -> ModelMetadata:
    """Read the ``grm`` metadata JSON of a model file; missing or malformed -> ArtifactMismatchError."""
    if not text:
        raise ArtifactMismatchError(
            f"{source} is not a grm-tracker export (no 'grm' metadata); export it with grm-export --config NAME"
        )
    try:
        return ModelMetadata.from_json(text)
    except (ConfigError, KeyError, TypeError) as e:
        raise ArtifactMismatchError(
            f"{source} carries unreadable grm metadata ({e}); re-export it with grm-export"
        ) from e


def check_config(metadata: ModelMetadata, config: str | None, source: str, rebuild: str) -> None:
    """Refuse a model exported for another config than the one the user named (``--config``)."""
    if config is not None and config != metadata.config:
        raise ArtifactMismatchError(
            f"{source} was exported for config '{metadata.config}' but --config is '{config}'; "
            f"drop --config or rebuild with: {rebuild}"
        )


def check_io(specs: Sequence[TensorSpec], metadata: ModelMetadata, source: str) -> None:
    """Check names, static shapes and dtypes of every tensor against the contract for ``metadata``."""
    inputs = {s.name: s for s in specs if s.is_input}
    outputs = {s.name: s for s in specs if not s.is_input}
    optional_inputs = set(inputs) - set(contract.INPUT_NAMES)
    if not set(contract.INPUT_NAMES) <= set(inputs) or optional_inputs - {contract.TEMPLATE_MASK}:
        raise ArtifactMismatchError(
            f"{source} has inputs {sorted(inputs)}; a grm model has {list(contract.INPUT_NAMES)} "
            f"(and optionally '{contract.TEMPLATE_MASK}'); re-export it with grm-export"
        )
    missing = [n for n in contract.OUTPUT_NAMES if n not in outputs]
    if missing:
        raise ArtifactMismatchError(f"{source} lacks outputs {missing}; a grm model has {list(contract.OUTPUT_NAMES)}")
    depth = metadata.depth if contract.DECISIONS in outputs and metadata.depth else None
    expected: dict[str, tuple[int, ...]] = {
        contract.TEMPLATE_MASK: (1, metadata.tracker.template_feat_size**2),
        **contract.input_shapes(metadata.tracker),
        **contract.output_shapes(metadata.tracker, depth),
    }
    for spec in specs:
        if spec.name in expected:
            _check_shape(spec, expected[spec.name], source)
        allowed = DECISION_DTYPES if spec.name == contract.DECISIONS else FLOAT_DTYPES
        if spec.name in expected and spec.dtype not in allowed:
            raise ArtifactMismatchError(
                f"{source}: tensor '{spec.name}' has dtype {spec.dtype}, expected one of {[str(d) for d in allowed]}"
            )


def _check_shape(spec: TensorSpec, expected: tuple[int, ...], source: str) -> None:
    if any(d is None or d < 0 for d in spec.shape):
        raise ArtifactMismatchError(
            f"{source}: tensor '{spec.name}' has dynamic shape {list(spec.shape)}; grm models need static shapes "
            f"{list(expected)}; re-export with grm-export"
        )
    if tuple(spec.shape) != tuple(expected):
        raise ArtifactMismatchError(
            f"{source}: tensor '{spec.name}' has shape {list(spec.shape)} but the model's metadata implies "
            f"{list(expected)}; the file and its metadata disagree, re-export it with grm-export"
        )


def as_float32_outputs(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Copy outputs out of reusable buffers; map outputs become float32, decisions keep their integer type."""
    return {
        name: (arr.astype(np.float32) if name != contract.DECISIONS else arr.copy()) for name, arr in outputs.items()
    }
