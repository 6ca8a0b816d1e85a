"""Training checkpoints: the project's resumable format and the official GRM export, both written atomically.

Project format (``checkpoint_%04d.pt`` after an epoch, ``checkpoint_%04d_step%06d.pt`` inside one, written on
Ctrl-C; loadable with ``weights_only=True``): ``format`` "grm-train", ``format_version``, ``model`` (state dict),
``optimizer``, ``scheduler``, ``scaler`` (AMP or None), ``epoch`` (completed epochs), ``step`` (iterations done in
the next epoch, 0 at an epoch boundary), ``epoch_sums`` (that epoch's running metric sums), ``config_name``,
``rng`` (python / numpy / torch states as tensors and lists) and ``metrics`` (last epoch's averages).

Official format (``GRM_ep%04d.pth.tar``): ``net`` (state dict), ``epoch``, ``actor_type`` "GRMActor",
``net_type`` "GRM", ``net_info`` None, ``constructor`` None, ``optimizer``, ``stats`` {}, ``settings`` None.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from grm.runtime.atomic import atomic_writer
from grm.runtime.cliapp import writing
from grm.runtime.errors import CheckpointError
from grm.train.checkpoint import read_checkpoint

FORMAT = "grm-train"
FORMAT_VERSION = 1
_PROJECT_RE = re.compile(r"^checkpoint_(\d{4,})(?:_step(\d{6,}))?\.pt$")


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel wrapper (state-dict keys without ``module.``)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, then rename over ``path``.

    The file is opened here, not by torch, so that a write error stays an OSError (torch's own writer turns
    "no space left" into a RuntimeError).

    Raises:
        OutputError: the folder is read-only or full (the message names ``path``).
    """
    with writing(path), atomic_writer(path) as f:
        torch.save(obj, f)
    return Path(path)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and, when present, CUDA) generator states as weights-only-safe values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *[float(v) for v in np_state[2:]]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    epoch: int,
    config_name: str,
    scaler: torch.amp.GradScaler | None = None,
    metrics: dict[str, float] | None = None,
    keep: int = 2,
    step: int = 0,
    epoch_sums: dict[str, float] | None = None,
) -> Path:
    """Write the checkpoint for ``epoch`` completed epochs plus ``step`` iterations of the next one (with that
    epoch's running ``epoch_sums``); keep only the newest ``keep`` files."""
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": epoch,
        "step": step,
        "epoch_sums": dict(epoch_sums or {}),
        "config_name": config_name,
        "rng": rng_state(),
        "metrics": dict(metrics or {}),
    }
    path = atomic_save(data, Path(directory) / checkpoint_name(epoch, step))
    for old in project_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink()
    return path


def checkpoint_name(epoch: int, step: int = 0) -> str:
    """``checkpoint_0003.pt`` after epoch 3; ``checkpoint_0004_step000120.pt`` after 120 iterations of epoch 4."""
    return f"checkpoint_{epoch:04d}.pt" if step == 0 else f"checkpoint_{epoch + 1:04d}_step{step:06d}.pt"


def _progress_key(match: re.Match[str]) -> tuple[int, int]:
    """(completed epochs, iterations into the next epoch) of a checkpoint name."""
    if match.group(2) is None:
        return int(match.group(1)), 0
    return int(match.group(1)) - 1, int(match.group(2))


def project_checkpoints(directory: str | Path) -> list[Path]:
    """The project checkpoints in ``directory``, oldest first (training progress order)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(_progress_key(m), p) for p in directory.iterdir() if (m := _PROJECT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = project_checkpoints(directory)
    return found[-1] if found else None


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a project checkpoint (weights only, no code executed); raises :class:`CheckpointError`."""
    data = read_checkpoint(path)
    if data.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a grm-train checkpoint (format {data.get('format')!r}); "
            "official GRM files can be used with --pretrained or grm-run, not --resume"
        )
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer grm-tracker (format {data['format_version']})")
    return data


def restore_training_state(
    data: dict[str, Any],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config_name: str,
    scaler: torch.amp.GradScaler | None = None,
) -> int:
    """Load weights, optimiser, schedule, AMP scaler and RNG states; returns the completed epoch count."""
    if data.get("config_name") != config_name:
        raise CheckpointError(f"cannot resume a {data.get('config_name')} run with --config {config_name}")
    unwrap(model).load_state_dict(data["model"], strict=True)
    optimizer.load_state_dict(data["optimizer"])
    scheduler.load_state_dict(data["scheduler"])
    if scaler is not None and data.get("scaler") is not None:
        scaler.load_state_dict(data["scaler"])
    set_rng_state(data["rng"])
    return int(data["epoch"])


def resume_point(data: dict[str, Any]) -> tuple[int, int, dict[str, float]]:
    """(completed epochs, iterations done in the next epoch, that epoch's running metric sums) of a checkpoint."""
    sums = data.get("epoch_sums") or {}
    return int(data["epoch"]), int(data.get("step", 0)), {str(k): float(v) for k, v in sums.items()}


def official_checkpoint(model: nn.Module, epoch: int, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """The dict the official trainer saves (docs/training.md, checkpoints), plain values where it pickles objects."""
    return {
        "epoch": epoch,
        "actor_type": "GRMActor",
        "net_type": "GRM",
        "net": unwrap(model).state_dict(),
        "net_info": None,
        "constructor": None,
        "optimizer": optimizer.state_dict() if optimizer else None,
        "stats": {},
        "settings": None,
    }


def save_official(
    path: str | Path, model: nn.Module, epoch: int, optimizer: torch.optim.Optimizer | None = None
) -> Path:
    """Write an official-format ``GRM_ep%04d.pth.tar`` (loads in the official code and :func:`load_checkpoint`)."""
    return atomic_save(official_checkpoint(model, epoch, optimizer), path)


def export_official(checkpoint: str | Path, output: str | Path, with_optimizer: bool = False) -> Path:
    """Convert a project checkpoint into the official format (weights, epoch; optimiser on request)."""
    data = load_training_state(checkpoint)
    out = {
        "epoch": int(data["epoch"]),
        "actor_type": "GRMActor",
        "net_type": "GRM",
        "net": data["model"],
        "net_info": None,
        "constructor": None,
        "optimizer": data["optimizer"] if with_optimizer else None,
        "stats": {},
        "settings": None,
    }
    return atomic_save(out, output)


def official_name(epoch: int) -> str:
    return f"GRM_ep{epoch:04d}.pth.tar"


def save_official_now(epoch: int, total_epochs: int) -> bool:
    """The official save policy: the last five epochs and every 100th."""
    return epoch > total_epochs - 5 or epoch % 100 == 0
