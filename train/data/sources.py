"""Training sources by the official dataset names, with their roots from options or environment.

Root resolution for each dataset, first match wins: an explicit option (``--lasot-dir`` ...), the
environment variable (``GRM_LASOT_DIR``, ``GRM_GOT10K_DIR``, ``GRM_TRACKINGNET_DIR``, ``GRM_COCO_DIR``),
then ``<data-root>/<lasot|got10k|trackingnet|coco>``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grm.runtime.errors import DatasetError
from grm.train.data.base import TrackingDataset
from grm.train.data.coco import Coco
from grm.train.data.got10k import Got10k
from grm.train.data.lasot import Lasot
from grm.train.data.trackingnet import TrackingNet

# official name -> (root key, factory)
_FACTORIES: Mapping[str, tuple[str, Callable[[Path], TrackingDataset]]] = {
    "LASOT": ("lasot", Lasot),
    "GOT10K_vot_train": ("got10k", lambda root: Got10k(root, split="vot_train")),
    "GOT10K_train": ("got10k", lambda root: Got10k(root, split="train")),
    "COCO17": ("coco", Coco),
    "TRACKINGNET": ("trackingnet", TrackingNet),
}
ENV_VARS = {
    "lasot": "GRM_LASOT_DIR",
    "got10k": "GRM_GOT10K_DIR",
    "trackingnet": "GRM_TRACKINGNET_DIR",
    "coco": "GRM_COCO_DIR",
}
DATASET_NAMES = tuple(_FACTORIES)


@dataclass(frozen=True)
class DatasetRoots:
    """Where each dataset lives; unset entries fall back to the environment, then to ``data_root/<key>``."""

    data_root: Path | None = None
    explicit: Mapping[str, Path] = field(default_factory=dict)

    def resolve(self, key: str, environ: Mapping[str, str] | None = None) -> Path:
        env = os.environ if environ is None else environ
        if self.explicit.get(key) is not None:
            return Path(self.explicit[key])
        if env.get(ENV_VARS[key]):
            return Path(env[ENV_VARS[key]])
        if self.data_root is not None:
            return Path(self.data_root) / key
        raise DatasetError(
            f"no root for {key}: pass --data-root (with a {key}/ folder), --{key}-dir or set {ENV_VARS[key]}"
        )


def build_datasets(
    names: Sequence[str], roots: DatasetRoots, environ: Mapping[str, str] | None = None
) -> list[TrackingDataset]:
    """Open the named training sources; an unknown name or a bad tree is one :class:`DatasetError`."""
    datasets = []
    for name in names:
        if name not in _FACTORIES:
            raise DatasetError(f"unknown training dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
        key, factory = _FACTORIES[name]
        datasets.append(factory(roots.resolve(key, environ)))
    return datasets
