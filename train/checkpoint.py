"""Safe, strict checkpoint loading: official GRM ``.pth.tar`` files and the project's own format.

Official files hold the weights under ``net`` next to pickled trainer objects; they are read with
``weights_only=True`` when possible and otherwise through :mod:`grm.train.safe_pickle`, which never
executes pickled code. Weights always load with ``strict=True``.
"""

from __future__ import annotations

import logging
import pickle
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
    """Load a checkpoint file as a dict without executing pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not _looks_like_torch_file(path):
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (neither a torch zip nor a pickle)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, IndexError, KeyError) as first:
        log.info("%s is not weights-only (%s); loading with the restricted unpickler", path, first)
        try:
            data = torch.load(path, map_location="cpu", weights_only=False, pickle_module=safe_pickle)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from e
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, IndexError, KeyError) as e:
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {e}") from e
    except (EOFError, ValueError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, expected a dict with 'net' or 'model'")
    return data


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (or, in the legacy format, a pickle starting with PROTO 0x80)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def extract_state_dict(data: Mapping[str, Any], path: str | Path = "checkpoint") -> tuple[dict[str, torch.Tensor], str | None]:
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
    return {"embed_dim": m.embed_dim, "depth": m.depth, "search_tokens": t.feat_size**2,
            "template_tokens": t.template_feat_size**2, "head_channels": m.head_channels}


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
            raise CheckpointError(f"{path} was trained as {named} but config {cfg.name} was requested; "
                                  f"pass --config {named}")
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
