"""Backend selection: open a model file (ONNX, TensorRT plan, or a checkpoint through a plugin).

Backends for other formats (the PyTorch checkpoint backend of ``grm.train``) are found through the
``grm.backends`` entry-point group, so the runtime never imports training code by name.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from grm.runtime.backends.base import Backend
from grm.runtime.errors import BackendUnavailableError, InputError

ENTRY_POINT_GROUP = "grm.backends"
CHECKPOINT_SUFFIXES = (".pth", ".tar", ".pt", ".ckpt")


def plugin(name: str) -> Any:
    """Load the backend factory registered under ``name`` in the ``grm.backends`` entry-point group."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    raise BackendUnavailableError(
        f"no '{name}' backend is installed; install grm-tracker with the matching extra "
        f"(e.g. pip install 'grm-tracker[train]' for PyTorch checkpoints)"
    )


def is_checkpoint(path: str | Path) -> bool:
    return Path(path).name.endswith(CHECKPOINT_SUFFIXES)


def open_checkpoint(path: str | Path, config: str | None = None, **options: Any) -> Backend:
    """Open a PyTorch checkpoint through the ``torch`` plugin (development use)."""
    if not Path(path).is_file():
        raise InputError(f"checkpoint not found: {path}")
    factory = plugin("torch")
    return factory(path, config=config, **options)


__all__ = ["Backend", "is_checkpoint", "open_checkpoint", "plugin"]
