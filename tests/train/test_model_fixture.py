"""Model-level conformance with the official implementation's outputs on the tiny fixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grm.train import load_checkpoint

THRESHOLDS = [0.0, 0.4, 0.55, 0.6]


@pytest.fixture(scope="module")
def fixture_run(upstream_tiny):
    torch.set_num_threads(1)
    model = load_checkpoint(upstream_tiny / "GRM_ep0001.pth.tar", config="tiny")
    ref = np.load(upstream_tiny / "model_outputs.npz")
    blocks: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: blocks.append(out[0])) for b in model.backbone.blocks]
    runs = []
    for threshold in THRESHOLDS:
        blocks.clear()
        with torch.no_grad():
            out = model(
                torch.from_numpy(ref["template"]),
                torch.from_numpy(ref["search"]),
                threshold=threshold,
                return_decisions=True,
            )
        runs.append((out, torch.stack(blocks, dim=1).numpy()))
    for h in hooks:
        h.remove()
    return ref, runs


@pytest.mark.parametrize("index", range(len(THRESHOLDS)))
def test_head_outputs_match(fixture_run, index):
    ref, runs = fixture_run
    out, _ = runs[index]
    for name in ("score_map", "size_map", "offset_map", "pred_boxes"):
        err = np.abs(getattr(out, name).numpy() - ref[name][index]).max()
        assert err <= 1e-5, f"{name} at threshold {THRESHOLDS[index]}: max abs error {err}"


@pytest.mark.parametrize("index", range(len(THRESHOLDS)))
def test_decisions_and_blocks_match(fixture_run, index):
    ref, runs = fixture_run
    out, block_out = runs[index]
    assert (ref["decisions"][index][:, 0] == -1).all()  # block 0 never divides
    np.testing.assert_array_equal(out.decisions.numpy(), ref["decisions"][index][:, 1:])
    assert np.abs(block_out - ref["block_out"][index]).max() <= 1e-4
    assert np.abs(block_out[:, -1] - ref["backbone_out"][index]).max() <= 1e-4


def test_threshold_semantics(fixture_run):
    """Larger thresholds put more tokens in the cross group (A iff p(S) < threshold)."""
    _, runs = fixture_run
    shares = [runs[i][0].decisions.float().mean().item() for i in (1, 2, 3)]
    assert shares[0] < shares[1] < shares[2]


def test_training_mode_returns_decision_shares(upstream_tiny):
    torch.manual_seed(0)
    model = load_checkpoint(upstream_tiny / "GRM_ep0001.pth.tar").train()
    ref = np.load(upstream_tiny / "model_outputs.npz")
    out = model(torch.from_numpy(ref["template"]), torch.from_numpy(ref["search"]))
    assert out.decisions.shape == (2, 3)
    assert ((out.decisions >= 0) & (out.decisions <= 1)).all()
    out.score_map.sum().backward()
    grad = model.backbone.blocks[1].attn.divide_predict[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0, "straight-through decisions must pass gradients to the predictor"
