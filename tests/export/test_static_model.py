"""The static-shape rewrite decides and computes like the PyTorch model and the official fixture."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from grm.export.static_model import StaticGrm, additive_masked_softmax
from grm.runtime.errors import ConfigError
from grm.train import build_model
from grm.train.model.division import decide, masked_softmax

THRESHOLDS = (0.0, 0.4, 0.55, 0.6)  # 0 (argmax) and every distinct official preset

MAPS = ("score_map", "size_map", "offset_map")


@pytest.mark.parametrize("index", range(len(THRESHOLDS)))
def test_rewrite_matches_pytorch_and_official_fixture(tiny_model, tiny_outputs, index: int) -> None:
    threshold = THRESHOLDS[index]
    template = torch.from_numpy(tiny_outputs["template"])
    search = torch.from_numpy(tiny_outputs["search"])
    static = StaticGrm(tiny_model, with_decisions=True)
    with torch.no_grad():
        ref = tiny_model(template, search, threshold=threshold, return_decisions=True)
        out = static(template, search, torch.tensor([threshold]))
    assert out.decisions.dtype == torch.int32 and out.decisions.shape == (2, 3, 64)
    assert torch.equal(out.decisions, ref.decisions.to(torch.int32))  # every dividing block, every token
    np.testing.assert_array_equal(out.decisions.numpy(), tiny_outputs["decisions"][index][:, 1:])
    for name in MAPS:
        got = getattr(out, name)
        torch.testing.assert_close(got, getattr(ref, name), atol=1e-5, rtol=0)
        np.testing.assert_allclose(got.numpy(), tiny_outputs[name][index], atol=1e-5, rtol=0)


def test_threshold_is_data_not_code(tiny_model, tiny_outputs) -> None:
    """One module instance serves every threshold: decisions change with the input tensor only."""
    static = StaticGrm(tiny_model, with_decisions=True)
    template = torch.from_numpy(tiny_outputs["template"][:1])
    search = torch.from_numpy(tiny_outputs["search"][:1])
    with torch.no_grad():
        shares = [static(template, search, torch.tensor([t])).decisions.float().mean().item() for t in THRESHOLDS]
    assert shares[1] < shares[2] < shares[3]  # larger threshold -> more cross tokens
    assert len(set(shares)) == 4


def test_allowed_mask_follows_the_three_group_policy(tiny_model) -> None:
    """T sees T and A, S sees S and A, A sees everything, every token sees itself (spelled out per token pair)."""
    static = StaticGrm(tiny_model)
    gen = torch.Generator().manual_seed(0)
    cross = torch.rand(3, static.num_search, generator=gen) < 0.4
    cross[1] = False  # nobody joins: two-stream attention
    cross[2] = True  # everybody joins: one-stream attention
    allowed = static._allowed(cross)
    assert allowed.dtype == torch.bool and allowed.shape == (3, 80, 80)
    for b in range(3):
        groups = ["T"] * static.num_template + ["A" if c else "S" for c in cross[b].tolist()]
        sees = [[q == k or gq == gk or "A" in (gq, gk) for k, gk in enumerate(groups)] for q, gq in enumerate(groups)]
        assert allowed[b].tolist() == sees


@pytest.mark.parametrize("spread", [1.0, 8.0, 40.0])
def test_exact_attention_reproduces_the_official_eps_softmax(spread: float) -> None:
    """The exact mode equals the official eps-softmax, also when a blocked key dominates a row."""
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(2, 3, 80, 80, generator=gen) * spread
    mask = (torch.rand(2, 80, 80, generator=gen) < 0.5).float()
    mask = mask + (1 - mask) * torch.eye(80)  # the diagonal is always allowed
    scores[..., 0, 5] = scores[..., 0, :].max(dim=-1).values + 30.0  # row 0: a key far above the rest ...
    mask[:, 0, 5] = 0.0  # ... that is blocked: the official leak decides this row
    official = masked_softmax(scores, mask)
    exact = additive_masked_softmax(scores, mask.unsqueeze(1) > 0.5, exact=True)
    torch.testing.assert_close(exact, official, atol=1e-7, rtol=1e-5)
    fast = additive_masked_softmax(scores, mask.unsqueeze(1) > 0.5, exact=False)
    if spread == 1.0:  # small logit spread: dropping eps changes nothing measurable outside row 0
        torch.testing.assert_close(fast[..., 1:, :], official[..., 1:, :], atol=1e-5, rtol=1e-4)
    # where a blocked key dominates, the official row is nearly uniform and the fast mode is not
    assert (fast[..., 0, :] - official[..., 0, :]).abs().max() > 0.1


def test_tie_goes_to_search_group_like_the_model() -> None:
    log_probs = torch.log(torch.full((1, 4, 2), 0.5))
    assert decide(log_probs, 0.0, training=False)[..., 1].sum() == 0
    by_argmax = log_probs[..., 1] > log_probs[..., 0]
    assert not by_argmax.any()


@pytest.mark.parametrize("target_type", ["roimax", "roiavg"])
def test_roi_target_types_read_the_template_mask(tiny_model, tiny_outputs, target_type: str) -> None:
    roi = roi_model(tiny_model, target_type)
    static = StaticGrm(roi, with_decisions=True)
    template = torch.from_numpy(tiny_outputs["template"])
    search = torch.from_numpy(tiny_outputs["search"])
    mask = torch.zeros(2, 16)
    mask[:, 5:7] = 1.0
    with torch.no_grad():
        ref = roi(template, search, 0.0, mask, return_decisions=True)
        out = static(template, search, torch.tensor([0.0]), mask)
        plain = static(template, search, torch.tensor([0.0]), torch.ones(2, 16))
    assert torch.equal(out.decisions, ref.decisions.to(torch.int32))
    torch.testing.assert_close(out.score_map, ref.score_map, atol=1e-5, rtol=0)
    assert not torch.equal(out.decisions, plain.decisions)  # the mask matters
    with pytest.raises(ConfigError, match="needs the template_mask input"):
        static(template, search, torch.tensor([0.0]))


def roi_model(model, target_type: str):  # noqa: ANN001, ANN201 (GRM)
    """The tiny network with the same weights but a roi* target representation (no released config uses one)."""
    config = dataclasses.replace(model.config, model=dataclasses.replace(model.config.model, target_type=target_type))
    roi = build_model(config)
    roi.load_state_dict(model.state_dict())
    return roi.eval()


def test_half_variant_keeps_islands_in_fp32_and_leaves_source_untouched(tiny_model) -> None:
    half = StaticGrm(tiny_model, half=True)
    assert half.backbone.blocks[1].attn.qkv.weight.dtype == torch.float16
    assert half.backbone.blocks[1].norm1.weight.dtype == torch.float32
    assert half.backbone.blocks[1].attn.divide_predict[0].weight.dtype == torch.float32
    assert half.box_head.conv1_ctr[0].weight.dtype == torch.float16
    assert tiny_model.backbone.blocks[1].attn.qkv.weight.dtype == torch.float32


@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
def test_callers_model_keeps_its_mode_dtype_and_weights(tiny_model, tiny_outputs, half: bool) -> None:
    model = build_model("tiny")  # train mode: dropout-free, but BatchNorm would use batch statistics
    model.load_state_dict(tiny_model.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    static = StaticGrm(model, with_decisions=True, half=half)
    template = torch.from_numpy(tiny_outputs["template"])
    search = torch.from_numpy(tiny_outputs["search"])
    with torch.no_grad():
        out = static(template, search, torch.tensor([0.0]))
    assert all(m.training for m in model.modules()) and not any(m.training for m in static.modules())
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    assert static.box_head.conv1_ctr[1].running_mean.data_ptr() != model.box_head.conv1_ctr[1].running_mean.data_ptr()
    with torch.no_grad():
        ref = tiny_model(template, search, threshold=0.0)
    atol = 5e-2 if half else 1e-5  # the static model ran in eval mode although its source was training
    torch.testing.assert_close(out.score_map, ref.score_map, atol=atol, rtol=0)
