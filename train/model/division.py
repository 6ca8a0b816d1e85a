"""Adaptive token division: predictor, decisions, three-group policy and masked softmax.

See docs/model.md (division, token groups, eps-softmax).

Class 0 = S (search token relates to search tokens only), class 1 = A (search token also
interacts with the template). Template tokens form group T.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SOFTMAX_EPS = 1e-6


def build_predictor(dim: int, hidden: tuple[int, int] = (384, 192)) -> nn.Sequential:
    """Per-token 2-class predictor over [search token ; target representation] (input size 2*dim)."""
    h1, h2 = hidden
    return nn.Sequential(
        nn.Linear(2 * dim, h1), nn.GELU(), nn.Linear(h1, h2), nn.GELU(), nn.Linear(h2, 2), nn.LogSoftmax(dim=-1)
    )


def target_representation(u_z: Tensor, target_type: str, template_mask: Tensor | None = None) -> Tensor:
    """Pool the normalised template tokens (B, Nz, D) into one (B, 1, D) target vector.

    ``roi*`` types weight tokens by the template box mask (B, Nz) and still pool over all Nz tokens.
    """
    if target_type.startswith("roi"):
        if template_mask is None:
            raise ValueError(f"target type {target_type} needs template_mask (B, Nz)")
        u_z = u_z * template_mask.unsqueeze(-1).to(u_z.dtype)
    if target_type.endswith("max"):
        return u_z.max(dim=1, keepdim=True)[0]
    return u_z.mean(dim=1, keepdim=True)


def decide(log_probs: Tensor, threshold: float | Tensor, training: bool) -> Tensor:
    """One-hot decisions (B, Nx, 2) from predictor log-probabilities (B, Nx, 2).

    Training: hard Gumbel-softmax (straight-through). Eval: threshold 0 -> argmax; threshold t > 0 ->
    class A iff softmax(log_probs)[0] < t.
    """
    if training:
        return F.gumbel_softmax(log_probs, tau=1.0, hard=True)
    cross = cross_by_threshold(log_probs, threshold) if threshold else cross_by_argmax(log_probs)
    return F.one_hot(cross.long(), num_classes=2).to(log_probs.dtype)


def cross_by_argmax(log_probs: Tensor) -> Tensor:
    """Bool (B, Nx): the threshold-0 rule, class A iff logp(A) > logp(S) (an exact tie stays in S)."""
    return log_probs[..., 1] > log_probs[..., 0]


def cross_by_threshold(log_probs: Tensor, threshold: float | Tensor) -> Tensor:
    """Bool (B, Nx): the rule for a threshold t > 0, class A iff p(S) < t."""
    return log_probs.softmax(dim=-1)[..., 0] < threshold


def batched_outer(rows: Tensor, cols: Tensor) -> Tensor:
    """(B, N, 1) x (B, N, 1) -> (B, N, N) with element [q, k] = rows[q] * cols[k], as a batched matmul."""
    return rows @ cols.transpose(1, 2)


def policy_mask(
    decision: Tensor, num_template: int, outer: Callable[[Tensor, Tensor], Tensor] = batched_outer
) -> Tensor:
    """Allowed-attention matrix M (B, N, N) from search decisions (B, Nx, 2); rows are queries.

    T sees T and A; S sees S and A; A sees everything; the diagonal is forced to 1. Built from products of
    the one-hot policy so that it stays differentiable through straight-through decisions. ``outer`` computes
    those products; any exact product gives the same 0/1 values (the static export multiplies elementwise).
    """
    b, nx, _ = decision.shape
    template = torch.cat([decision.new_ones(b, num_template, 1), decision.new_zeros(b, num_template, 2)], dim=-1)
    search = torch.cat([decision.new_zeros(b, nx, 1), decision], dim=-1)
    policy = torch.cat([template, search], dim=1)
    t, s, a = policy[..., 0:1], policy[..., 1:2], policy[..., 2:3]
    mask = outer(t, t) + outer(s, s) + outer(t + s + a, a) + outer(a, t) + outer(a, s)
    eye = torch.eye(mask.shape[-1], dtype=mask.dtype, device=mask.device).unsqueeze(0)
    return mask + (1.0 - mask) * eye


def masked_softmax(scores: Tensor, mask: Tensor, eps: float = SOFTMAX_EPS) -> Tensor:
    """The official masked softmax over keys: exp in float32 times the 0/1 mask, ``(e + eps/N)/(sum e + eps)``.

    ``scores`` (B, H, N, N), ``mask`` (B, N, N). The row max is taken over all keys, masked ones included,
    so masked keys keep a tiny weight eps/N/(sum + eps).
    """
    n = scores.shape[-1]
    shifted = scores - scores.max(dim=-1, keepdim=True)[0]
    e = shifted.to(torch.float32).exp() * mask.unsqueeze(1).to(torch.float32)
    attn = (e + eps / n) / (e.sum(dim=-1, keepdim=True) + eps)
    return attn.to(scores.dtype)
