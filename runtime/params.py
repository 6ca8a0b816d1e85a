"""Tracker parameters: everything the runtime needs to track with an exported model.

These travel inside exported models as JSON metadata (``to_metadata`` / ``from_metadata``), so the
runtime never needs the training config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from grm.runtime.errors import ConfigError

SCHEMA_VERSION = 1
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _frozen_thresholds(values: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType({str(k).upper(): float(v) for k, v in values.items()})


@dataclass(frozen=True, kw_only=True)
class TrackerParams:
    """Test-time geometry of one GRM variant.

    Attributes:
        template_size: template crop side in pixels (128 for the released models).
        template_factor: template crop side relative to sqrt(w*h) of the target box.
        search_size: search crop side in pixels (256 or 320).
        search_factor: search crop side relative to sqrt(w*h) of the previous box.
        patch_size: backbone stride in pixels; the head's feature map is search_size // patch_size.
        mean, std: RGB normalisation applied to pixel/255.
        thresholds: division threshold per dataset key (upper case); ``DEFAULT`` is the fallback,
            0 means the argmax rule.
    """

    template_size: int
    template_factor: float
    search_size: int
    search_factor: float
    patch_size: int = 16
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    thresholds: Mapping[str, float] = field(default_factory=lambda: _frozen_thresholds({"DEFAULT": 0.0}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", _frozen_thresholds(self.thresholds))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        for name in ("template_size", "search_size"):
            value = getattr(self, name)
            if value <= 0 or value % self.patch_size:
                raise ConfigError(f"{name}={value} must be a positive multiple of patch_size={self.patch_size}")
        if self.template_factor <= 0 or self.search_factor <= 0:
            raise ConfigError("template_factor and search_factor must be positive")
        for key, value in self.thresholds.items():
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"threshold {key}={value} must lie in [0, 1)")

    @property
    def feat_size(self) -> int:
        """Side of the search feature map (head output), in cells."""
        return self.search_size // self.patch_size

    @property
    def template_feat_size(self) -> int:
        """Side of the template token grid, in cells."""
        return self.template_size // self.patch_size

    def threshold_for(self, dataset: str | None) -> float:
        """Division threshold for a dataset name, as the official tracker picks it (upper-cased key, else DEFAULT)."""
        if dataset:
            key = dataset.upper()
            if key in self.thresholds:
                return self.thresholds[key]
        return self.thresholds.get("DEFAULT", 0.0)

    def to_dict(self) -> dict[str, Any]:
        # Shallow field copy: dataclasses.asdict deep-copies, which fails on the read-only thresholds mapping.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["thresholds"] = dict(self.thresholds)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackerParams:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown tracker parameters {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class ModelMetadata:
    """What an exported model says about itself (stored as JSON under the ONNX metadata key ``grm``).

    ``batch`` is the leading dimension of every input and output: N >= 1 template/search pairs per call, or
    0 (``None`` is read as 0) for a dynamic batch; models written before batching existed lack it and are 1.
    """

    config: str
    tracker: TrackerParams
    precision: str = "fp32"
    opset: int = 0
    package_version: str = ""
    checkpoint_sha256: str = ""
    outputs_masks: bool = False
    depth: int = 0
    batch: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        batch = 0 if self.batch is None else self.batch
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
            raise ConfigError(f"model batch {self.batch!r} must be a whole number >= 1, or 0/null for dynamic")
        object.__setattr__(self, "batch", batch)

    @property
    def dynamic_batch(self) -> bool:
        """Whether the model takes any number of samples per call (``batch`` 0)."""
        return self.batch == 0

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["tracker"] = self.tracker.to_dict()
        data["extra"] = dict(self.extra)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"model metadata is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"model metadata is a JSON {type(data).__name__}, not an object")
        if not isinstance(data.get("tracker"), dict):
            raise ConfigError("model metadata has no 'tracker' object")
        version = data.get("schema_version", 0)
        if not isinstance(version, int):
            raise ConfigError(f"model metadata schema_version {version!r} is not a whole number")
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"model metadata schema {version} is newer than this grm-tracker understands ({SCHEMA_VERSION}); "
                "upgrade grm-tracker"
            )
        data["tracker"] = TrackerParams.from_dict(data["tracker"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


METADATA_KEY = "grm"
