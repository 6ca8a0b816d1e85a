"""The CENTER head (docs/model.md, head): score, size and offset maps from the search tokens."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=True), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


SIGMOID_MARGIN = 1e-4
"""The official head keeps its sigmoids inside [1e-4, 1 - 1e-4], so the focal loss never takes log(0)."""
BRANCHES = ("ctr", "offset", "size")
"""Head branches in their state-dict names: centre score, sub-cell offset, box size."""


def sigmoid_clamped(x: Tensor) -> Tensor:
    """Sigmoid clamped to [SIGMOID_MARGIN, 1 - SIGMOID_MARGIN]."""
    return torch.clamp(x.sigmoid(), min=SIGMOID_MARGIN, max=1 - SIGMOID_MARGIN)


class CenterHead(nn.Module):
    """Three branches of 4 x (3x3 conv, BN, ReLU) with channels C, C/2, C/4, C/8, then a 1x1 conv.

    Args:
        in_dim: token width D.
        channels: width of the first conv stage (256 in the released models).
        feat_size: side F of the search feature map.
    """

    def __init__(self, in_dim: int, channels: int, feat_size: int) -> None:
        super().__init__()
        self.feat_size = feat_size
        widths = [in_dim, channels, channels // 2, channels // 4, channels // 8]
        for branch, out in zip(BRANCHES, (1, 2, 2), strict=True):
            for i in range(4):
                self.add_module(f"conv{i + 1}_{branch}", _conv_bn_relu(widths[i], widths[i + 1]))
            self.add_module(f"conv5_{branch}", nn.Conv2d(widths[4], out, kernel_size=1))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _branch(self, x: Tensor, name: str) -> Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv{i}_{name}")(x)
        return x

    def logits(self, feat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, D, F, F) -> raw branch outputs (ctr (B,1,F,F), offset (B,2,F,F), size (B,2,F,F)) before the sigmoids."""
        ctr, offset, size = (self._branch(feat, name) for name in BRANCHES)
        return ctr, offset, size

    @staticmethod
    def activate(ctr: Tensor, offset: Tensor, size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Branch outputs -> (score, size, offset) maps: clamped sigmoids on score and size, offset as is."""
        return sigmoid_clamped(ctr), sigmoid_clamped(size), offset

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, D, F, F) -> score (B,1,F,F) in [1e-4, 1-1e-4], size (B,2,F,F) crop fractions, offset (B,2,F,F) cells."""
        return self.activate(*self.logits(feat))


def decode_boxes(score: Tensor, size: Tensor, offset: Tensor) -> Tensor:
    """Normalised (cx, cy, w, h) (B, 4) at each map's first maximum, ``cx = (col + off_x)/F`` (no half-cell shift).

    Torch twin of :func:`grm.runtime.decode.decode_box` for batches (training and the model's pred_boxes).
    """
    b, _, f, _ = score.shape
    idx = score.flatten(1).argmax(dim=1, keepdim=True)
    iy = torch.div(idx, f, rounding_mode="floor")
    ix = idx % f
    gather = idx.unsqueeze(1).expand(b, 2, 1)
    wh = size.flatten(2).gather(dim=2, index=gather).squeeze(-1)
    off = offset.flatten(2).gather(dim=2, index=gather).squeeze(-1)
    cx = (ix.to(score.dtype) + off[:, :1]) / f
    cy = (iy.to(score.dtype) + off[:, 1:]) / f
    return torch.cat([cx, cy, wh], dim=1)
