"""Export-only GRM: the trained modules with the adaptive token division rewritten as static-shape masked attention.

The PyTorch model decides per search token whether it joins the template (class A, "cross") or stays with the
search tokens (class S), then masks attention with the official eps-softmax. This wrapper computes the same
decisions from plain comparisons and expresses the three-group policy (docs/model.md, token groups) as a
boolean mask that selects finite logits for a standard softmax, so the graph has fixed shapes, no
argsort/TopK/NonZero and no data-dependent branch:

* ``threshold`` is a graph input of shape [B], one value per template/search pair, so one call can mix dataset
  presets: ``threshold > 0`` selects ``p(S) < threshold`` (docs/model.md, division), otherwise the argmax rule
  ``logp[A] > logp[S]`` (an exact tie goes to S, like the PyTorch model);
* ``batch`` fixes the leading dimension B of every input and output (0: dynamic, for ``--batch dynamic``);
  pairs never interact, so row i of each output is what a batch-1 model computes for row i of the inputs;
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
from grm.train.model.division import SOFTMAX_EPS, cross_by_argmax, cross_by_threshold, policy_mask
from grm.train.model.grm import search_feature_map
from grm.train.model.head import CenterHead
from grm.train.model.vit import Attention, Block

MASK_BIAS = -3.0e4
"""Added to blocked scores: exp underflows to 0 in FP32, and the value stays inside the FP16 range."""
ATTENTION_MODES = ("exact", "fast")


class StaticOutput(NamedTuple):
    """Graph outputs in contract order; ``decisions`` (B, depth-1, Nx) int32 (1 = cross) only when requested."""

    score_map: Tensor
    size_map: Tensor
    offset_map: Tensor
    decisions: Tensor | None = None


class StaticGrm(nn.Module):
    """Fixed-shape GRM for ONNX export, running copies of the trained backbone and head.

    Everything but the division decisions and the attention mask is the trained model's own code
    (:mod:`grm.train.model`): patch embedding, q/k/v split and projection, MLP, predictor, policy, head.
    The copies are put in eval mode, so the caller's model (its mode, dtype and weights) is never changed.

    Args:
        model: a GRM network in any mode.
        with_decisions: also return the per-block division decisions.
        half: FP16 compute with FP32 islands (see module docstring).
        attention: "exact" (official eps-softmax) or "fast" (plain masked softmax), see the module docstring.
        batch: pairs per call the graph is traced for (N >= 1), or 0 for a dynamic batch.
    """

    def __init__(
        self, model: GRM, with_decisions: bool = False, half: bool = False, attention: str = "exact", batch: int = 1
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ConfigError(f"attention {attention!r} not in {ATTENTION_MODES}")
        if batch < 0:
            raise ConfigError(f"batch {batch} must be >= 1, or 0 for a dynamic batch")
        self.attention = attention
        self.batch = batch
        # Copies of the submodules (the GRM itself holds an un-copyable config): eval mode and the FP16 cast
        # must not reach the caller's model.
        self.backbone = copy.deepcopy(model.backbone)
        self.box_head: CenterHead = copy.deepcopy(model.box_head)
        self.target_type = model.backbone.target_type
        self.uses_template_mask = self.target_type.startswith("roi")
        self.with_decisions = with_decisions
        self.compute_dtype = torch.float16 if half else torch.float32
        self.feat_size = model.feat_size
        self.num_search = model.feat_size**2
        self.num_template = model.backbone.pos_embed_z.shape[1]
        if half:
            predictors = [blk.attn.divide_predict for blk in self.backbone.blocks if blk.attn.divide]
            half_keeping_islands([self.backbone, self.box_head], keep_fp32=predictors)
        self.eval()

    def forward(
        self, template: Tensor, search: Tensor, threshold: Tensor, template_mask: Tensor | None = None
    ) -> StaticOutput:
        """template (B,3,T,T), search (B,3,S,S) normalised RGB float32; threshold [B] float32, one per pair.

        ``template_mask`` (B, Nz) float32 0/1 is required by (and only read by) ``roimax``/``roiavg`` models.
        """
        if self.uses_template_mask and template_mask is None:
            raise ConfigError(f"target type {self.target_type!r} needs the template_mask input (B, Nz)")
        dt = self.compute_dtype
        tokens = self.backbone.embed(template.to(dt), search.to(dt))
        decisions = []
        for block in self.backbone.blocks:
            tokens, cross = self._block(block, tokens, threshold, template_mask)
            if cross is not None:
                decisions.append(cross)
        tokens = _layer_norm(self.backbone.norm, tokens)
        logits = self.box_head.logits(search_feature_map(tokens, self.feat_size))
        score, size, offset = CenterHead.activate(*(x.float() for x in logits))
        if not self.with_decisions:
            return StaticOutput(score, size, offset)
        return StaticOutput(score, size, offset, torch.stack(decisions, dim=1).to(torch.int32))

    def _block(
        self, block: Block, x: Tensor, threshold: Tensor, template_mask: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """The trained block (pre-norm residual attention + MLP) with FP32 LayerNorms and static decisions."""
        u = _layer_norm(block.norm1, x)
        attn = block.attn
        cross = self._decide(attn, u, threshold, template_mask) if attn.divide else None
        x = x + self._attention(attn, u, cross)
        return x + block.mlp(_layer_norm(block.norm2, x)), cross

    def _decide(self, attn: Attention, u: Tensor, threshold: Tensor, template_mask: Tensor | None) -> Tensor:
        """Bool (B, Nx): search token joins the template group (class A). Runs in FP32.

        Both official rules are computed and the threshold input selects one with boolean algebra (no Where on
        bool tensors, no data-dependent branch).
        """
        log_probs = attn.predict(u.float(), self.num_search, self.target_type, template_mask)
        threshold = self._per_pair(threshold)
        use_threshold = threshold > 0  # broadcast over the pair's search tokens
        by_threshold, by_argmax = cross_by_threshold(log_probs, threshold), cross_by_argmax(log_probs)
        return (use_threshold & by_threshold) | (~use_threshold & by_argmax)

    def _per_pair(self, threshold: Tensor) -> Tensor:
        """The threshold [B] as a (B, 1) column that broadcasts over each pair's (B, Nx) tokens.

        A batch-1 model compares with the [1] input directly (it broadcasts the same way), which keeps batch-1
        graphs node for node what they were before batching existed.
        """
        return threshold if self.batch == 1 else threshold.unsqueeze(-1)

    def _attention(self, attn: Attention, u: Tensor, cross: Tensor | None) -> Tensor:
        """Self-attention of the trained module; the query is scaled before ``q @ k^T`` (FP16 range) and the
        scores and weights are FP32."""
        q, k, v = attn.split_heads(u)
        scores = ((q * attn.scale) @ k.transpose(-2, -1)).float()
        if cross is None:
            weights = scores.softmax(dim=-1)
        else:
            allowed = self._allowed(cross).unsqueeze(1)
            weights = additive_masked_softmax(scores, allowed, exact=self.attention == "exact")
        return attn.merge_heads(weights.to(v.dtype), v)

    def _allowed(self, cross: Tensor) -> Tensor:
        """(B, N, N) bool: query (row) may attend key (column), from the trained model's three-group policy."""
        decision = torch.stack([~cross, cross], dim=-1).float()  # one-hot (S, A) per search token
        return policy_mask(decision, self.num_template, outer=_outer) > 0.5


def additive_masked_softmax(scores: Tensor, allowed: Tensor, exact: bool = True, eps: float = SOFTMAX_EPS) -> Tensor:
    """Attention weights over the last axis of FP32 ``scores`` restricted to ``allowed`` (bool, broadcastable).

    The static-graph form of :func:`grm.train.model.division.masked_softmax`: a finite additive mask before a
    standard softmax. ``exact``: the official ``(e*M + eps/N) / (sum(e*M) + eps)`` with ``e = exp(s - rowmax(s))``,
    written as that softmax plus a per-row correction (module docstring); else the plain masked softmax. All
    values stay finite; every row has an allowed key (the diagonal).
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
    """(B, N, 1) x (B, N, 1) -> (B, N, N) by broadcasting: elementwise Mul nodes instead of K=1 MatMuls."""
    return rows * cols.transpose(1, 2)


def _layer_norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    """LayerNorm computed in FP32 whatever the residual dtype (no-op casts in an FP32 model)."""
    y = nn.functional.layer_norm(x.float(), norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return y.to(x.dtype)
