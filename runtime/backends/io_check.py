"""Checks shared by every exported-model backend: metadata parsing and the I/O contract.

A model file is trusted only after its names, static shapes and dtypes match :mod:`grm.runtime.contract`
for the tracker parameters and batch it carries (a dynamic-batch model: all but the leading dimension), so a
wrong or foreign file fails at load with one clear line. At run time a static batch-N model takes 1..N
template/search pairs per call; the backends pad to N and drop the padding rows of the outputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from grm.runtime import contract
from grm.runtime.errors import ArtifactMismatchError, ConfigError, InputError
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

    def batch_shape(self, count: int) -> tuple[int, ...]:
        """The shape for ``count`` samples: the leading (batch) dimension replaced, the rest static."""
        return TensorSpec(self.name, (count, *self.shape[1:]), self.dtype, self.is_input).static_shape

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
    batch = metadata.batch or 1  # a dynamic model is checked past its leading dimension
    expected: dict[str, tuple[int, ...]] = {
        contract.TEMPLATE_MASK: contract.template_mask_shape(metadata.tracker, batch),
        **contract.input_shapes(metadata.tracker, batch),
        **contract.output_shapes(metadata.tracker, depth, batch),
    }
    for spec in specs:
        if spec.name in expected:
            _check_shape(spec, expected[spec.name], metadata.dynamic_batch, source)
        allowed = DECISION_DTYPES if spec.name == contract.DECISIONS else FLOAT_DTYPES
        if spec.name in expected and spec.dtype not in allowed:
            raise ArtifactMismatchError(
                f"{source}: tensor '{spec.name}' has dtype {spec.dtype}, expected one of {[str(d) for d in allowed]}"
            )


def _check_shape(spec: TensorSpec, expected: tuple[int, ...], dynamic_batch: bool, source: str) -> None:
    """Static shapes must equal ``expected``; a dynamic-batch model has a dynamic leading dimension instead."""
    shape = list(spec.shape)
    if dynamic_batch:
        if not shape or shape[0] is not None:
            raise ArtifactMismatchError(
                f"{source}: tensor '{spec.name}' has shape {shape} but the model's metadata says dynamic batch "
                f"(leading dimension not fixed); the file and its metadata disagree, re-export it with grm-export"
            )
        shape[0], expected = 0, (0, *expected[1:])  # compare the rest; 0 stands for the dynamic batch
    if any(d is None or d < 0 for d in shape):
        raise ArtifactMismatchError(
            f"{source}: tensor '{spec.name}' has dynamic shape {list(spec.shape)}; grm models need static shapes "
            f"{list(expected)} (or batch 0 in their metadata for a dynamic batch); re-export with grm-export"
        )
    if tuple(shape) != tuple(expected):
        raise ArtifactMismatchError(
            f"{source}: tensor '{spec.name}' has shape {list(spec.shape)} but the model's metadata implies "
            f"{list(expected)}; the file and its metadata disagree, re-export it with grm-export"
        )


def sample_count(inputs: Mapping[str, np.ndarray], metadata: ModelMetadata, source: str) -> int:
    """How many template/search pairs one call's feeds hold (rows of ``search``); a static batch-N model takes
    at most N (fewer are padded by :func:`fill_rows`), a dynamic one any number >= 1.

    Raises:
        InputError: a search input that is not [K, 3, S, S], or more pairs than a static model's batch.
    """
    per_sample = contract.input_shapes(metadata.tracker)[contract.SEARCH][1:]
    search = np.asarray(inputs[contract.SEARCH])
    count = search.size // math.prod(per_sample)
    if count < 1 or search.shape[-3:] != per_sample or search.size != count * math.prod(per_sample):
        raise InputError(f"search input has shape {list(search.shape)}; {source} takes [K, *{list(per_sample)}]")
    if not metadata.dynamic_batch and count > metadata.batch:
        raise InputError(
            f"{count} template/search pairs given to {source}, whose batch is {metadata.batch}; give at most "
            f"{metadata.batch} per call (MultiTracker splits them) or export with --batch dynamic"
        )
    return count


def fill_rows(buffer: np.ndarray, array: np.ndarray, count: int, name: str) -> None:
    """Copy ``count`` samples into the first rows of a model input buffer and repeat the last one into the rest.

    ``array`` holds ``count`` rows, or one row shared by all samples (a scalar threshold, say); the padding rows
    of a static batch make the network compute real pairs whose outputs nobody reads.
    """
    array = np.asarray(array)
    try:
        rows = array.reshape(-1, *buffer.shape[1:])
    except ValueError:
        expected = list(buffer.shape[1:])
        raise InputError(f"input '{name}' has shape {list(array.shape)}; the model takes [K, *{expected}]") from None
    if rows.shape[0] not in (1, count):
        raise InputError(f"input '{name}' has {rows.shape[0]} rows for {count} template/search pairs")
    np.copyto(buffer[:count], rows, casting="same_kind")
    if count < buffer.shape[0]:
        buffer[count:] = buffer[count - 1]


def as_float32_outputs(outputs: Mapping[str, np.ndarray], count: int | None = None) -> dict[str, np.ndarray]:
    """Copy outputs out of reusable buffers, keeping the first ``count`` rows (all when None; padding rows of a
    static batch are dropped); map outputs become float32, decisions keep their integer type."""
    rows = slice(None) if count is None else slice(count)
    return {
        name: (arr[rows].astype(np.float32) if name != contract.DECISIONS else arr[rows].copy())
        for name, arr in outputs.items()
    }
