"""Build a GRM network from a config name, with the official random initialisation."""

from __future__ import annotations

import torch
from torch import nn

from grm.train.config import GrmConfig, get_config
from grm.train.model.grm import GRM
from grm.train.model.vit import VisionTransformer, resize_pos_embed


def build_model(config: str | GrmConfig) -> GRM:
    """A freshly initialised GRM (timm ViT rule for the backbone, xavier for the head), in train mode."""
    model = GRM(get_config(config))
    init_backbone(model.backbone)
    return model


def init_backbone(backbone: VisionTransformer) -> None:
    """trunc_normal(0.02) for Linear weights, pos_embed and tokens; zero biases; unit LayerNorms.

    The template/search position embeddings are then derived from ``pos_embed`` as the official
    ``finetune_track`` does.
    """
    for module in backbone.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for name in ("pos_embed", "cls_token", "dist_token"):
        if hasattr(backbone, name):
            nn.init.trunc_normal_(getattr(backbone, name), std=0.02)
    derive_track_pos_embeds(backbone)


@torch.no_grad()
def derive_track_pos_embeds(backbone: VisionTransformer) -> None:
    """Set ``pos_embed_z`` / ``pos_embed_x`` by bicubic resizing of ``pos_embed`` (class rows dropped)."""
    start = backbone.patch_start_index
    for param in (backbone.pos_embed_z, backbone.pos_embed_x):
        grid = int(round(param.shape[1] ** 0.5))
        param.copy_(resize_pos_embed(backbone.pos_embed, start, grid))
