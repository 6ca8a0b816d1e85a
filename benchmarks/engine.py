"""Opening the model under test: any file ``grm.runtime.backends.open_model`` accepts.

:class:`EngineOpener` is a small picklable callable, so worker processes (parallel runs, isolated speed
measurements) can each open the model themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from grm.runtime.backends import open_model
from grm.runtime.backends.base import Backend


@dataclass(frozen=True)
class EngineOpener:
    """Opens ``path`` (``.onnx``, ``.plan``/``.engine`` or a checkpoint) with the given backend options;
    ``device`` is the CUDA device (None: device 0, or the CPU for checkpoints)."""

    path: str
    backend: str = "auto"
    config: str | None = None
    threads: int | None = None
    device: int | None = None

    def __call__(self) -> Backend:
        return open_model(self.path, backend=self.backend, config=self.config, threads=self.threads, device=self.device)

    def with_device(self, device: int) -> EngineOpener:
        """The same model on CUDA device ``device`` (what ``grm-bench --devices`` gives each worker)."""
        return replace(self, device=device)

    @property
    def label(self) -> str:
        """Default tracker label: the model's file name (``grm.plan``, ``grm_fp16.onnx``)."""
        return Path(self.path).name
