"""grm.export: GRM as a static-shape ONNX model (FP32/FP16) or TensorRT engine, proven equal to PyTorch.

Entry points: :func:`grm.export.pipeline.run_export` (what ``grm-export`` runs),
:func:`grm.export.to_onnx.export_onnx`, :func:`grm.export.parity.compare`,
:func:`grm.runtime.backends.trt_build.build_engine` (TensorRT engines; it lives in the runtime, which
needs no torch, so grm-calibrate builds INT8 engines with it too) and the weights store in :mod:`grm.export.weights`.
Submodules import torch/onnx on use; ``import grm.export`` alone is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grm.runtime.cliapp import Needs, run_cli

if TYPE_CHECKING:
    import typer

NEEDS = (
    Needs("torch", "export"),
    Needs("onnx", "export"),
    Needs("onnxscript", "export"),
    Needs("onnxruntime", "export"),
)


def _load_app() -> typer.Typer:
    from grm.export.cli import app

    return app


def main(argv: list[str] | None = None) -> None:
    """``grm-export``: checks the export extra (also for ``--help``), then runs the CLI in the error boundary."""
    run_cli("grm-export", _load_app, argv, needs=NEEDS)
