"""Backend selection: open a model file (ONNX, TensorRT plan, or a checkpoint through a plugin).

``open_model`` dispatches on the file: ``.onnx`` -> ONNX Runtime, ``.plan``/``.engine`` -> TensorRT,
checkpoints (``.pth``, ``.pth.tar``, ``.pt``, ``.ckpt``) -> the ``torch`` plugin. Backends for other formats
(the PyTorch checkpoint backend of ``grm.train``) are found through the ``grm.backends`` entry-point group,
so the runtime never imports training code by name. GPU libraries are imported only when asked for.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from grm.runtime.backends.base import Backend
from grm.runtime.errors import ArtifactMismatchError, BackendUnavailableError, InputError

ENTRY_POINT_GROUP = "grm.backends"
CHECKPOINT_SUFFIXES = (".pth", ".tar", ".pt", ".ckpt")
ONNX_SUFFIXES = (".onnx",)
PLAN_SUFFIXES = (".plan", ".engine")
ORT_BACKENDS = ("onnxruntime", "ort-cpu", "ort-cuda", "ort-tensorrt")
BACKENDS = ("auto", *ORT_BACKENDS, "tensorrt", "torch")


def plugin(name: str) -> Any:
    """Load the backend factory registered under ``name`` in the ``grm.backends`` entry-point group."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                return ep.load()
            except ImportError as e:
                raise BackendUnavailableError(
                    f"the '{name}' backend cannot load: {e}; install grm-tracker with the matching extra "
                    f'(e.g. pip install "grm-tracker[train]" for PyTorch checkpoints)'
                ) from None
    raise BackendUnavailableError(
        f"no '{name}' backend is installed; install grm-tracker with the matching extra "
        '(e.g. pip install "grm-tracker[train]" for PyTorch checkpoints)'
    )


def is_checkpoint(path: str | Path) -> bool:
    return Path(path).name.endswith(CHECKPOINT_SUFFIXES)


def open_checkpoint(path: str | Path, config: str | None = None, **options: Any) -> Backend:
    """Open a PyTorch checkpoint through the ``torch`` plugin (development use)."""
    check_model_file(path)
    if importlib.util.find_spec("torch") is None:
        raise BackendUnavailableError(
            f'{path} is a PyTorch checkpoint, which needs torch: pip install "grm-tracker[train]" '
            "(or run an .onnx export of it)"
        )
    factory = plugin("torch")
    return factory(path, config=config, **options)


def check_model_file(path: str | Path) -> None:
    """A model path must name an existing regular file; a folder or a missing file is one clear line."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f"model {path} is a folder, not a file; give the .onnx, .plan or checkpoint file in it")
    if not target.exists():
        raise InputError(f"model file not found: {path}")
    if not target.is_file():
        raise InputError(f"model {path} is not a regular file")


def model_kind(path: str | Path) -> str:
    """``onnx``, ``plan`` or ``checkpoint`` from the file name; anything else is an InputError."""
    name = Path(path).name.lower()
    if name.endswith(ONNX_SUFFIXES):
        return "onnx"
    if name.endswith(PLAN_SUFFIXES):
        return "plan"
    if is_checkpoint(name):
        return "checkpoint"
    raise InputError(
        f"cannot tell the model type of {path}: expected .onnx, .plan/.engine (TensorRT) or a checkpoint "
        f"({', '.join(CHECKPOINT_SUFFIXES)})"
    )


def check_backend(kind: str, backend: str, path: str | Path) -> None:
    """Refuse a backend that cannot run this kind of file, saying which one can."""
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}")
    fits = {"onnx": ("auto", *ORT_BACKENDS), "plan": ("auto", "tensorrt"), "checkpoint": ("auto", "torch")}[kind]
    if backend in fits:
        return
    hints = {
        "onnx": "build a TensorRT plan with grm-export --engine, or use --backend ort-tensorrt",
        "plan": "TensorRT plans run only with --backend tensorrt (or auto); use the .onnx file for ONNX Runtime",
        "checkpoint": "export it with grm-export first, or use --backend torch",
    }
    raise ArtifactMismatchError(f"--backend {backend} cannot run {path} ({kind}); {hints[kind]}")


def open_model(
    path: str | Path,
    *,
    backend: str = "auto",
    config: str | None = None,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    cuda_api: str | None = None,
    device: int | None = None,
) -> Backend:
    """Open any grm model file behind the :class:`Backend` interface.

    Args:
        path: ``.onnx``, ``.plan``/``.engine`` (with its ``.json`` manifest) or a PyTorch checkpoint.
        backend: ``auto``, ``onnxruntime`` (= ``ort-cpu``), ``ort-cuda``, ``ort-tensorrt``, ``tensorrt`` or
            ``torch``. A requested provider that is missing raises; only ``auto`` falls back (with a WARNING).
        config: config name; required for raw checkpoints, otherwise checked against the model's metadata.
        threads: CPU threads for inference (ONNX Runtime intra-op, torch); None = library default.
        providers: explicit ONNX Runtime provider list, overriding the one ``backend`` implies.
        cuda_api: ``cuda-python`` (default) or ``pycuda`` for TensorRT plans; else $GRM_CUDA_API.
        device: CUDA device index for the GPU providers (``device_id``), TensorRT plans and checkpoints
            (``cuda:<device>``); None = device 0 for GPUs, the CPU for checkpoints.
    """
    check_model_file(path)
    kind = model_kind(path)
    check_backend(kind, backend, path)
    if kind == "onnx":
        from grm.runtime.backends.ort import open_onnx

        gpu = device or 0
        return open_onnx(path, backend=backend, config=config, threads=threads, providers=providers, device=gpu)
    if kind == "plan":
        from grm.runtime.backends.trt import open_plan

        return open_plan(path, config=config, cuda_api=cuda_api, device=device or 0)
    options: dict[str, Any] = {} if threads is None else {"threads": threads}
    if device is not None:
        options["device"] = f"cuda:{device}"
    return open_checkpoint(path, config=config, **options)


__all__ = [
    "BACKENDS",
    "Backend",
    "check_backend",
    "check_model_file",
    "is_checkpoint",
    "model_kind",
    "open_checkpoint",
    "open_model",
    "plugin",
]
