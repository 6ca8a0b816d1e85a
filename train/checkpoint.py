"""Safe, strict checkpoint loading: official GRM ``.pth.tar`` files and the project's own format.

Official files hold the weights under ``net`` next to pickled trainer objects; they are read with
``weights_only=True`` when possible and otherwise through :mod:`grm.train.safe_pickle`, which never
executes pickled code. Weights always load with ``strict=True``.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from grm.runtime.errors import CheckpointError
from grm.train import safe_pickle
from grm.train.config import CONFIGS, GrmConfig, get_config
from grm.train.model import GRM, build_model

log = logging.getLogger(__name__)
StateDict = Mapping[str, torch.Tensor]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file as a dict without executing pickled code.

    Raises:
        CheckpointError: missing, a folder, empty, truncated or otherwise unreadable (one line naming the file,
            whatever exception the installed torch raises for the damage), or unsafe.
    """
    path = Path(path)
    check_checkpoint_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the restricted loader follows
            data = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as first:  # noqa: BLE001 - a damaged file raises anything from struct.error to RuntimeError
        log.debug("%s is not weights-only (%s); loading with the restricted unpickler", path, first)
        data = _load_restricted(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, expected a dict with 'net' or 'model'")
    return data


def check_checkpoint_file(path: Path) -> None:
    """One clear line for what is not a checkpoint file at all, before torch sees it."""
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; pass the checkpoint file (.pth.tar or .pt) inside it")
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a regular file (a device or pipe); pass the checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); an interrupted download or copy? fetch it again")
    if zipfile.is_zipfile(path):
        if not _holds_torch_pickle(path):
            raise CheckpointError(
                f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl inside); for the official "
                f"release archive run: grm-export fetch --from-zip {path}"
            )
        return
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        raise CheckpointError(f"{path} looks truncated (a zip archive without its end); download or copy it again")
    if not head.startswith(b"\x80"):  # torch.save's legacy format is a pickle starting with PROTO 0x80
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither a torch zip nor a pickle)")


def _holds_torch_pickle(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _load_restricted(path: Path) -> Any:
    """torch.load through :mod:`safe_pickle` (official files pickle trainer objects besides the weights)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=safe_pickle)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from e
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - see read_checkpoint
        detail = " ".join(str(e).split(" (Could this error message be improved?")[0].split())[:160]
        raise CheckpointError(
            f"{path} looks truncated or corrupt ({type(e).__name__}: {detail}); download or copy it again"
        ) from e


def extract_state_dict(
    data: Mapping[str, Any], path: str | Path = "checkpoint"
) -> tuple[dict[str, torch.Tensor], str | None]:
    """Return (state dict, config name or None) from an official (``net``) or project (``model``) checkpoint."""
    for key in ("net", "model"):
        if key in data and isinstance(data[key], Mapping):
            state = dict(data[key])
            break
    else:
        if data and all(isinstance(v, torch.Tensor) for v in data.values()):
            state = dict(data)
        else:
            raise CheckpointError(f"{path} has no weights under 'net' or 'model' (keys: {sorted(data)[:10]})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: state dict entries are not tensors: {bad[:5]}")
    name = data.get("config_name")
    return state, name if isinstance(name, str) else None


def architecture_signature(state: StateDict) -> dict[str, int] | None:
    """Width, depth and token grids read from a state dict's shapes (None if it is not a GRM state dict)."""
    try:
        dim = state["backbone.patch_embed.proj.weight"].shape[0]
        nx = state["backbone.pos_embed_x"].shape[1]
        nz = state["backbone.pos_embed_z"].shape[1]
        head = state["box_head.conv1_ctr.0.weight"].shape[0]
    except KeyError:
        return None
    depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("backbone.blocks."))
    return {"embed_dim": dim, "depth": depth, "search_tokens": nx, "template_tokens": nz, "head_channels": head}


def config_signature(config: GrmConfig) -> dict[str, int]:
    m, t = config.model, config.tracker
    return {
        "embed_dim": m.embed_dim,
        "depth": m.depth,
        "search_tokens": t.feat_size**2,
        "template_tokens": t.template_feat_size**2,
        "head_channels": m.head_channels,
    }


def infer_config(state: StateDict, path: str | Path = "checkpoint", epoch: int | None = None) -> GrmConfig:
    """The registered config whose architecture matches the state dict.

    ``vitb_256`` and ``vitb_256_got`` share an architecture; the official checkpoint's epoch (300 vs 100)
    then decides, else ``vitb_256`` with a warning.
    """
    sig = architecture_signature(state)
    if sig is None:
        raise CheckpointError(f"{path} is not a GRM checkpoint (no backbone/box_head weights)")
    matches = [c for c in CONFIGS.values() if config_signature(c) == sig]
    if not matches:
        raise CheckpointError(f"{path} matches no known config (architecture {sig}); known: {', '.join(CONFIGS)}")
    by_epoch = [c for c in matches if c.test_epoch == epoch]
    if len(matches) > 1 and len(by_epoch) != 1:
        log.warning("%s fits %s; using %s (pass --config to choose)", path, [c.name for c in matches], matches[0].name)
    return by_epoch[0] if len(by_epoch) == 1 else matches[0]


def _check_matches(config: GrmConfig, state: StateDict, path: str | Path) -> None:
    sig = architecture_signature(state)
    want = config_signature(config)
    if sig is None:
        raise CheckpointError(f"{path} is not a GRM checkpoint (no backbone/box_head weights)")
    if sig != want:
        matching = [c.name for c in CONFIGS.values() if config_signature(c) == sig]
        hint = f"; it looks like {matching[0]}: pass --config {matching[0]}" if matching else ""
        diffs = ", ".join(f"{k} {sig[k]} (expected {want[k]})" for k in want if sig[k] != want[k])
        raise CheckpointError(f"{path} does not fit config {config.name}: {diffs}{hint}")


def load_state_strict(model: GRM, state: StateDict, path: str | Path = "checkpoint") -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the missing/unexpected keys."""
    result = model.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing {len(result.missing_keys)} keys (e.g. {result.missing_keys[:3]})")
    if result.unexpected_keys:
        problems.append(f"unexpected {len(result.unexpected_keys)} keys (e.g. {result.unexpected_keys[:3]})")
    if problems:
        raise CheckpointError(f"{path} does not load strictly into {model.config.name}: {'; '.join(problems)}")


def load_checkpoint(path: str | Path, config: str | GrmConfig | None = None) -> GRM:
    """Build the model for ``config`` (or the config the checkpoint names or matches) and load it strictly.

    Returns the model in eval mode on CPU.
    """
    data = read_checkpoint(path)
    state, named = extract_state_dict(data, path)
    if config is not None:
        cfg = get_config(config)
        if named and named != cfg.name:
            raise CheckpointError(
                f"{path} was trained as {named} but config {cfg.name} was requested; pass --config {named}"
            )
    elif named:
        cfg = get_config(named)
    else:
        epoch = data.get("epoch")
        cfg = infer_config(state, path, epoch if isinstance(epoch, int) else None)
    _check_matches(cfg, state, path)
    model = build_model(cfg)
    try:
        load_state_strict(model, state, path)
    except RuntimeError as e:  # shape mismatch inside load_state_dict
        raise CheckpointError(f"{path} does not load into {cfg.name}: {str(e).splitlines()[-1].strip()}") from e
    return model.eval()
