"""Export-only GRM: the trained modules with the adaptive token division rewritten as static-shape masked attention.

The PyTorch model decides per search token whether it joins the template (class A, "cross") or stays with the
search tokens (class S), then masks attention with the official eps-softmax. This wrapper computes the same
decisions from plain comparisons and expresses the three-group policy (spec A.6) as a boolean mask that
selects finite logits for a standard softmax, so the graph has fixed shapes, no argsort/TopK/NonZero and no
data-dependent branch:

* ``threshold`` is a graph input of shape [1]: ``threshold > 0`` selects ``p(S) < threshold`` (spec A.5),
  otherwise the argmax rule ``logp[A] > logp[S]`` (an exact tie goes to S, like the PyTorch model);
* ``attention="exact"`` (default) reproduces the official masked softmax
  ``(e*M + eps/N) / (sum(e*M) + eps)``, ``e = exp(s - rowmax(s))``, exactly: a standard softmax ``p`` of the
  scores with a finite additive mask, then a per-row correction ``p*w + (1 - w)/N`` with
  ``w = Z / (Z + eps)`` and ``Z = exp(rowmax_allowed - rowmax) / max(p)``. The correction keeps the official
  leak of ``eps/N`` to blocked keys; it matters only in rows whose maximum is a blocked key, where it is what
  the official model computes;
* ``attention="fast"`` drops the correction (plain masked softmax): cheaper, equal to the official model up to
  O(eps) terms except in those rows;
* the query is scaled before ``q @ k^T``; scores, mask and softmax are FP32 (also in the FP16 model).

With ``half=True`` the backbone and head run in FP16 while LayerNorm, the attention softmax, the division
predictor and the final sigmoid stay FP32 (explicit casts); inputs and outputs stay FP32 (see :mod:`grm.export.fp16`).
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import Tensor, nn

from grm.export.fp16 import half_keeping_islands
from grm.runtime.errors import ConfigError
from grm.train.model import GRM
from grm.train.model.division import target_representation

SOFTMAX_EPS = 1e-6
"""The official masked softmax's epsilon (spec A.7)."""
MASK_BIAS = -3.0e4
"""Added to blocked scores: exp underflows to 0 in FP32, and the value stays inside the FP16 range."""
ATTENTION_MODES = ("exact", "fast")
HEAD_BRANCHES = ("ctr", "offset", "size")


class StaticOutput(NamedTuple):
    """Graph outputs in contract order; ``decisions`` (B, depth-1, Nx) int32 (1 = cross) only when requested."""

    score_map: Tensor
    size_map: Tensor
    offset_map: Tensor
    decisions: Tensor | None = None


class StaticGrm(nn.Module):
    """Fixed-shape GRM for ONNX export, sharing (or, with ``half``, copying) the trained submodules.

    Args:
        model: a GRM network; it is switched to eval mode.
        with_decisions: also return the per-block division decisions.
        half: FP16 compute with FP32 islands (see module docstring); works on a deep copy of ``model``.
        attention: "exact" (official eps-softmax) or "fast" (plain masked softmax), see the module docstring.
    """

    def __init__(self, model: GRM, with_decisions: bool = False, half: bool = False, attention: str = "exact") -> None:
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ConfigError(f"attention {attention!r} not in {ATTENTION_MODES}")
        self.attention = attention
        target_type = model.backbone.target_type
        model.eval()
        # The FP16 variant casts weights, so it works on copies (the GRM itself holds an un-copyable config).
        self.backbone = copy.deepcopy(model.backbone) if half else model.backbone
        self.box_head = copy.deepcopy(model.box_head) if half else model.box_head
        self.target_type = target_type
        self.uses_template_mask = target_type.startswith("roi")
        self.with_decisions = with_decisions
        self.compute_dtype = torch.float16 if half else torch.float32
        self.feat_size = model.feat_size
        self.num_search = model.feat_size**2
        self.num_template = model.backbone.pos_embed_z.shape[1]
        flags = torch.cat([torch.ones(self.num_template), torch.zeros(self.num_search)])
        self.register_buffer("template_flags", flags.unsqueeze(0), persistent=False)
        if half:
            predictors = [blk.attn.divide_predict for blk in self.backbone.blocks if blk.attn.divide]
            half_keeping_islands([self.backbone, self.box_head], keep_fp32=predictors)
        self.eval()

    def forward(
        self, template: Tensor, search: Tensor, threshold: Tensor, template_mask: Tensor | None = None
    ) -> StaticOutput:
        """template (B,3,T,T), search (B,3,S,S) normalised RGB float32; threshold [1] float32.

        ``template_mask`` (B, Nz) float32 0/1 is required by (and only read by) ``roimax``/``roiavg`` models.
        """
        if self.uses_template_mask and template_mask is None:
            raise ConfigError(f"target type {self.target_type!r} needs the template_mask input (B, Nz)")
        bb = self.backbone
        dt = self.compute_dtype
        z = bb.patch_embed(template.to(dt)) + bb.pos_embed_z
        x = bb.patch_embed(search.to(dt)) + bb.pos_embed_x
        tokens = torch.cat([z, x], dim=1)
        decisions = []
        for block in bb.blocks:
            tokens, cross = self._block(block, tokens, threshold, template_mask)
            if cross is not None:
                decisions.append(cross)
        tokens = _layer_norm(bb.norm, tokens)
        b, _, d = tokens.shape
        feat = tokens[:, -self.num_search :].transpose(1, 2).reshape(b, d, self.feat_size, self.feat_size)
        score, size, offset = self._head(feat)
        if not self.with_decisions:
            return StaticOutput(score, size, offset)
        return StaticOutput(score, size, offset, torch.stack(decisions, dim=1).to(torch.int32))

    def _block(
        self, block: nn.Module, x: Tensor, threshold: Tensor, template_mask: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        u = _layer_norm(block.norm1, x)
        attn = block.attn
        cross = self._decide(attn.divide_predict, u, threshold, template_mask) if attn.divide else None
        x = x + self._attention(attn, u, cross)
        return x + block.mlp(_layer_norm(block.norm2, x)), cross

    def _decide(self, predictor: nn.Module, u: Tensor, threshold: Tensor, template_mask: Tensor | None) -> Tensor:
        """Bool (B, Nx): search token joins the template group (class A). Runs in FP32."""
        u32 = u.float()
        u_z, u_x = u32[:, : self.num_template], u32[:, self.num_template :]
        mask = template_mask.float() if self.uses_template_mask and template_mask is not None else None
        target = target_representation(u_z, self.target_type, mask).expand(-1, self.num_search, -1)
        log_probs = predictor(torch.cat([u_x, target], dim=-1))
        by_argmax = log_probs[..., 1] > log_probs[..., 0]
        by_threshold = log_probs.softmax(dim=-1)[..., 0] < threshold
        use_threshold = threshold > 0  # [1], broadcast; boolean algebra instead of a Where on bool tensors
        return (use_threshold & by_threshold) | (~use_threshold & by_argmax)

    def _attention(self, attn: nn.Module, u: Tensor, cross: Tensor | None) -> Tensor:
        b, n, c = u.shape
        heads = attn.num_heads
        qkv = attn.qkv(u).reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        scores = ((q * attn.scale) @ k.transpose(-2, -1)).float()
        if cross is None:
            weights = scores.softmax(dim=-1)
        else:
            weights = masked_softmax(scores, self._allowed(cross).unsqueeze(1), exact=self.attention == "exact")
        weights = weights.to(v.dtype)
        out = (weights @ v).transpose(1, 2).reshape(b, n, c)
        return attn.proj(out)

    def _allowed(self, cross: Tensor) -> Tensor:
        """(B, N, N) bool: query (row) may attend key (column), spec A.6.

        allowed = T_q T_k + S_q S_k + A_k + A_q (1 - A_k): T sees T and A, S sees S and A, A sees everything;
        every token sees itself, so no row is fully blocked.
        """
        t = self.template_flags.expand(cross.shape[0], -1)
        a = torch.cat([torch.zeros_like(t[:, : self.num_template]), cross.float()], dim=1)
        s = 1.0 - t - a
        allowed = _outer(t, t) + _outer(s, s) + a.unsqueeze(1) + _outer(a, 1.0 - a)
        return allowed > 0.5

    def _head(self, feat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        maps = []
        for branch in HEAD_BRANCHES:
            x = feat
            for i in range(1, 6):
                x = getattr(self.box_head, f"conv{i}_{branch}")(x)
            maps.append(x.float())
        ctr, offset, size = maps
        return _sigmoid_clamped(ctr), _sigmoid_clamped(size), offset


def masked_softmax(scores: Tensor, allowed: Tensor, exact: bool = True, eps: float = SOFTMAX_EPS) -> Tensor:
    """Attention weights over the last axis of FP32 ``scores`` restricted to ``allowed`` (bool, broadcastable).

    ``exact``: the official ``(e*M + eps/N) / (sum(e*M) + eps)`` with ``e = exp(s - rowmax(s))``, written as a
    standard softmax plus a per-row correction (module docstring); else the plain masked softmax. All values
    stay finite; every row has an allowed key (the diagonal).
    """
    biased = scores + (~allowed).to(scores.dtype) * MASK_BIAS
    p = biased.softmax(dim=-1)
    if not exact:
        return p
    n = scores.shape[-1]
    row_max = scores.amax(dim=-1, keepdim=True)
    allowed_max = biased.amax(dim=-1, keepdim=True)
    z = torch.exp(allowed_max - row_max) / p.amax(dim=-1, keepdim=True)  # sum over allowed of exp(s - rowmax)
    w = z / (z + eps)
    return p * w + (1.0 - w) / n


def _outer(rows: Tensor, cols: Tensor) -> Tensor:
    """(B, N) x (B, N) -> (B, N, N) with element [q, k] = rows[q] * cols[k]."""
    return rows.unsqueeze(2) * cols.unsqueeze(1)


def _layer_norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    """LayerNorm computed in FP32 whatever the residual dtype (no-op casts in an FP32 model)."""
    y = nn.functional.layer_norm(x.float(), norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return y.to(x.dtype)


def _sigmoid_clamped(x: Tensor) -> Tensor:
    return torch.clamp(x.sigmoid(), min=1e-4, max=1 - 1e-4)
