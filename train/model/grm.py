"""The GRM network: ViT backbone with adaptive token division plus CENTER head."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from grm.train.config import GrmConfig
from grm.train.model.head import CenterHead, decode_boxes
from grm.train.model.vit import Division, VisionTransformer


class GrmOutput(NamedTuple):
    """Network outputs (docs/model.md, head).

    Attributes:
        score_map: (B, 1, F, F) centre score.
        size_map: (B, 2, F, F) box (w, h) as fractions of the search crop.
        offset_map: (B, 2, F, F) sub-cell centre offset (dx, dy).
        pred_boxes: (B, 1, 4) normalised cxcywh decoded at the raw score map's maximum.
        decisions: training: (B, depth-1) share of search tokens in the cross group per dividing block;
            eval with ``return_decisions``: (B, depth-1, Nx) int8, 1 = cross; otherwise None.
    """

    score_map: Tensor
    size_map: Tensor
    offset_map: Tensor
    pred_boxes: Tensor
    decisions: Tensor | None = None


class GRM(nn.Module):
    """GRM tracker network for one :class:`GrmConfig`."""

    def __init__(self, config: GrmConfig) -> None:
        super().__init__()
        m, t = config.model, config.tracker
        self.config = config
        self.feat_size = t.feat_size
        self.backbone = VisionTransformer(
            embed_dim=m.embed_dim,
            depth=m.depth,
            num_heads=m.num_heads,
            mlp_ratio=m.mlp_ratio,
            patch_size=m.patch_size,
            pretrain_grid=m.pretrain_grid,
            patch_start_index=m.patch_start_index,
            template_grid=t.template_feat_size,
            search_grid=t.feat_size,
            drop_path_rate=m.drop_path_rate,
            eps=m.layernorm_eps,
            divide_hidden=m.divide_hidden,
            target_type=m.target_type,
        )
        self.box_head = CenterHead(m.embed_dim, m.head_channels, t.feat_size)

    def forward(
        self,
        template: Tensor,
        search: Tensor,
        threshold: float | Tensor = 0.0,
        template_mask: Tensor | None = None,
        return_decisions: bool = False,
    ) -> GrmOutput:
        """Run on normalised RGB crops template (B,3,T,T) and search (B,3,S,S).

        ``threshold`` 0 uses the argmax division rule; t > 0 puts a token in the cross group iff p(S) < t.
        ``template_mask`` (B, Nz) is only read by the ``roimax``/``roiavg`` target types.
        """
        tokens, divisions = self.backbone(template, search, threshold, template_mask)
        score, size, offset = self.box_head(search_feature_map(tokens, self.feat_size))
        boxes = decode_boxes(score, size, offset).unsqueeze(1)
        return GrmOutput(score, size, offset, boxes, self._decisions(divisions, return_decisions))

    def _decisions(self, divisions: list[Division], per_token: bool) -> Tensor | None:
        if self.training:
            return torch.stack([d.decision[..., 1].mean(dim=-1) for d in divisions], dim=1)
        if per_token:
            return torch.stack([d.decision[..., 1] for d in divisions], dim=1).to(torch.int8)
        return None


def search_feature_map(tokens: Tensor, feat_size: int) -> Tensor:
    """The last F*F tokens (B, N, D), row-major, as the head's input map (B, D, F, F)."""
    feat = tokens[:, -(feat_size**2) :]
    return feat.transpose(1, 2).reshape(feat.shape[0], feat.shape[2], feat_size, feat_size)
