"""The GRM backbone: a ViT whose blocks after the first divide search tokens (docs/model.md).

Module and parameter names follow the official state dict (``backbone.blocks.<i>.attn.divide_predict``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grm.train.model.division import build_predictor, decide, masked_softmax, policy_mask, target_representation


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: (B, 3, H, W) -> (B, H*W/p^2, D), row-major tokens."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth per sample, scaled by 1/keep in training; identity in eval."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)


class Division(NamedTuple):
    """Per-block division result: one-hot decisions (B, Nx, 2) and predictor log-probs (B, Nx, 2)."""

    decision: Tensor
    log_probs: Tensor


class Attention(nn.Module):
    """Multi-head self-attention; with ``divide`` it masks attention by the three-group policy."""

    def __init__(self, dim: int, num_heads: int, divide: bool, divide_hidden: tuple[int, int] = (384, 192)) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.divide = divide
        if divide:
            self.divide_predict = build_predictor(dim, divide_hidden)

    def forward(
        self, u: Tensor, num_search: int, threshold: float | Tensor, target_type: str, template_mask: Tensor | None
    ) -> tuple[Tensor, Division | None]:
        q, k, v = self.split_heads(u)
        scores = (q @ k.transpose(-2, -1)) * self.scale
        division = None
        if self.divide:
            log_probs = self.predict(u, num_search, target_type, template_mask)
            division = Division(decide(log_probs, threshold, self.training), log_probs)
            attn = masked_softmax(scores, policy_mask(division.decision, u.shape[1] - num_search))
        else:
            attn = scores.softmax(dim=-1)
        return self.merge_heads(attn, v), division

    def split_heads(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised tokens (B, N, D) -> q, k, v, each (B, heads, N, D/heads)."""
        b, n, c = u.shape
        qkv = self.qkv(u).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        return q, k, v

    def merge_heads(self, attn: Tensor, v: Tensor) -> Tensor:
        """Attention weights (B, heads, N, N) applied to v, heads concatenated and projected: (B, N, D)."""
        b, _, n, _ = v.shape
        out = (attn @ v).transpose(1, 2).reshape(b, n, self.proj.in_features)
        return self.proj(out)

    def predict(self, u: Tensor, num_search: int, target_type: str, template_mask: Tensor | None) -> Tensor:
        """Division predictor log-probabilities (B, Nx, 2) over [search token ; target representation]."""
        u_z, u_x = u[:, :-num_search], u[:, -num_search:]
        target = target_representation(u_z, target_type, template_mask).expand(-1, num_search, -1)
        return self.divide_predict(torch.cat([u_x, target], dim=-1))


class Block(nn.Module):
    """Pre-norm transformer block; ``divide`` selects the GRM attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path: float,
        divide: bool,
        eps: float,
        divide_hidden: tuple[int, int] = (384, 192),
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, divide, divide_hidden)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(
        self, x: Tensor, num_search: int, threshold: float | Tensor, target_type: str, template_mask: Tensor | None
    ) -> tuple[Tensor, Division | None]:
        feat, division = self.attn(self.norm1(x), num_search, threshold, target_type, template_mask)
        x = x + self.drop_path(feat)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, division


class VisionTransformer(nn.Module):
    """ViT backbone over the token sequence [template ; search], each with its own position embedding.

    ``cls_token`` and the 224-px ``pos_embed`` stay registered (the official state dict has them) but are
    only used to derive ``pos_embed_z`` / ``pos_embed_x`` from pretrained weights.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        patch_size: int,
        pretrain_grid: int,
        patch_start_index: int,
        template_grid: int,
        search_grid: int,
        drop_path_rate: float,
        eps: float,
        divide_hidden: tuple[int, int],
        target_type: str,
    ) -> None:
        super().__init__()
        self.target_type = target_type
        self.patch_start_index = patch_start_index
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if patch_start_index == 2:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, patch_start_index + pretrain_grid**2, embed_dim))
        self.pos_embed_z = nn.Parameter(torch.zeros(1, template_grid**2, embed_dim))
        self.pos_embed_x = nn.Parameter(torch.zeros(1, search_grid**2, embed_dim))
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, rates[i], divide=i > 0, eps=eps, divide_hidden=divide_hidden)
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=eps)

    def forward(
        self, template: Tensor, search: Tensor, threshold: float | Tensor = 0.0, template_mask: Tensor | None = None
    ) -> tuple[Tensor, list[Division]]:
        """Returns the final-normed tokens (B, Nz+Nx, D) and the divisions of blocks 1..depth-1."""
        tokens = self.embed(template, search)
        num_search = self.pos_embed_x.shape[1]
        divisions = []
        for block in self.blocks:
            tokens, division = block(tokens, num_search, threshold, self.target_type, template_mask)
            if division is not None:
                divisions.append(division)
        return self.norm(tokens), divisions

    def embed(self, template: Tensor, search: Tensor) -> Tensor:
        """Patch tokens plus position embeddings, concatenated as [template ; search]: (B, Nz+Nx, D)."""
        z = self.patch_embed(template) + self.pos_embed_z
        x = self.patch_embed(search) + self.pos_embed_x
        return torch.cat([z, x], dim=1)


def resize_pos_embed(pos_embed: Tensor, patch_start_index: int, grid: int) -> Tensor:
    """Bicubically resize a square pretrained position embedding (cls/dist rows dropped) to ``grid x grid``."""
    patches = pos_embed[:, patch_start_index:, :]
    src = int(round(patches.shape[1] ** 0.5))
    dim = patches.shape[-1]
    image = patches.transpose(1, 2).reshape(1, dim, src, src)
    resized = F.interpolate(image, size=(grid, grid), mode="bicubic", align_corners=False)
    return resized.flatten(2).transpose(1, 2)
