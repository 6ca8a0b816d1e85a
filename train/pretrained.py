"""MAE/DeiT ViT checkpoints -> GRM backbone weights (a pure function, like timm's checkpoint filters).

Keys are prefixed with ``backbone.``; the 14x14 ``pos_embed`` (class/dist rows dropped) is bicubically
resized to the template and search grids to give ``pos_embed_z`` and ``pos_embed_x``; decoder, head and
other non-backbone keys are dropped. Division predictors and the box head are left to their initialisation.
A whole GRM checkpoint (:func:`whole_model_state`) is instead loaded as it is, for fine-tuning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from grm.runtime.errors import CheckpointError
from grm.train.checkpoint import extract_state_dict
from grm.train.config import GrmConfig, get_config
from grm.train.model.vit import resize_pos_embed

_BACKBONE_PREFIXES = ("cls_token", "dist_token", "pos_embed", "patch_embed.", "blocks.", "norm.")


@dataclass(frozen=True)
class AdaptReport:
    """What :func:`adapt_pretrained` did, key by key.

    Attributes:
        dropped: source keys not used (decoder, classifier head, mask token, ...).
        derived: keys created from others (``backbone.pos_embed_z`` / ``_x``).
        uninitialised: model keys the source does not provide (division predictors, box head).
    """

    dropped: list[str] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)
    uninitialised: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"dropped {len(self.dropped)} keys {self.dropped}; derived {self.derived}; "
            f"left at initialisation {len(self.uninitialised)} keys"
        )


def _unwrap(checkpoint: Mapping[str, object]) -> Mapping[str, torch.Tensor]:
    for key in ("model", "state_dict"):
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping):
            return inner
    return checkpoint  # type: ignore[return-value]


def adapt_pretrained(
    checkpoint: Mapping[str, object], config: str | GrmConfig, model_keys: list[str] | None = None
) -> tuple[dict[str, torch.Tensor], AdaptReport]:
    """Turn a ViT checkpoint (``{"model": sd}`` or a bare state dict) into GRM backbone weights.

    Args:
        checkpoint: the loaded MAE/DeiT file.
        config: GRM config; gives width, grids and how many class/dist rows ``pos_embed`` starts with.
        model_keys: the target model's state-dict keys, to list what stays uninitialised.
    """
    cfg = get_config(config)
    source = _unwrap(checkpoint)
    out: dict[str, torch.Tensor] = {}
    dropped = []
    for key, value in source.items():
        if key.startswith(_BACKBONE_PREFIXES) and isinstance(value, torch.Tensor):
            out[f"backbone.{key}"] = value
        else:
            dropped.append(key)
    pos = out.get("backbone.pos_embed")
    if pos is None:
        raise CheckpointError("pretrained checkpoint has no pos_embed; is it a ViT (MAE/DeiT) checkpoint?")
    _check_width(pos, cfg)
    start, t = cfg.model.patch_start_index, cfg.tracker
    with torch.no_grad():
        out["backbone.pos_embed_z"] = resize_pos_embed(pos.float(), start, t.template_feat_size).contiguous()
        out["backbone.pos_embed_x"] = resize_pos_embed(pos.float(), start, t.feat_size).contiguous()
    derived = ["backbone.pos_embed_z", "backbone.pos_embed_x"]
    uninitialised = sorted(set(model_keys) - set(out)) if model_keys is not None else []
    return out, AdaptReport(dropped=sorted(dropped), derived=derived, uninitialised=uninitialised)


def whole_model_state(checkpoint: Mapping[str, Any], path: str | Path = "checkpoint") -> dict[str, torch.Tensor] | None:
    """The state dict of a whole GRM checkpoint (official ``net`` or ``grm-train`` file), else None (a ViT file).

    A GRM checkpoint is recognised by its box-head weights; it initialises every weight for fine-tuning.
    """
    try:
        state, _ = extract_state_dict(checkpoint, path)
    except CheckpointError:
        return None
    return state if any(k.startswith("box_head.") for k in state) else None


def _check_width(pos: torch.Tensor, cfg: GrmConfig) -> None:
    expected = (1, cfg.model.patch_start_index + cfg.model.pretrain_grid**2, cfg.model.embed_dim)
    if tuple(pos.shape) != expected:
        raise CheckpointError(
            f"pretrained pos_embed has shape {tuple(pos.shape)}, config {cfg.name} expects {expected} "
            f"(pretrain file {cfg.model.pretrain_file or 'none'}); use the matching MAE/DeiT checkpoint"
        )
