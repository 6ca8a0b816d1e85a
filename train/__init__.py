"""grm.train: the GRM network in PyTorch, checkpoints, data and training.

Heavy submodules load on first use, so ``import grm.train`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from grm.runtime.cliapp import Needs, run_cli

if TYPE_CHECKING:
    import typer

_LAZY = {
    "build_model": "grm.train.model",
    "GRM": "grm.train.model",
    "GrmOutput": "grm.train.model",
    "load_checkpoint": "grm.train.checkpoint",
    "read_checkpoint": "grm.train.checkpoint",
    "adapt_pretrained": "grm.train.pretrained",
    "AdaptReport": "grm.train.pretrained",
    "get_config": "grm.train.config",
    "CONFIGS": "grm.train.config",
    "GrmConfig": "grm.train.config",
}

__all__ = sorted([*_LAZY, "main"])
NEEDS = (Needs("torch", "train"),)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'grm.train' has no attribute {name!r}")


def _load_app() -> typer.Typer:
    from grm.train.cli import app

    return app


def main(argv: list[str] | None = None) -> None:
    """``grm-train``: checks the train extra (torch) first, then runs the CLI in the error boundary."""
    run_cli("grm-train", _load_app, argv, needs=NEEDS)
