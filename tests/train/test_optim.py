from __future__ import annotations

import pytest
import torch

from grm.train.config import TrainConfig
from grm.train.model import build_model
from grm.train.optim import build_optimizer, build_scheduler, clip_gradients, param_groups


@pytest.fixture(scope="module")
def model():
    return build_model("tiny")


def test_three_groups_with_official_learning_rates(model):
    opt = build_optimizer(model, TrainConfig())
    head, backbone, divide = opt.param_groups
    assert (head["lr"], backbone["lr"], divide["lr"]) == pytest.approx((4e-4, 4e-5, 4e-4))
    assert all(g["weight_decay"] == 1e-4 for g in opt.param_groups)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("backbone" not in names[id(p)] for p in head["params"])
    assert all("divide" in names[id(p)] for p in divide["params"]) and divide["params"]
    backbone_names = {names[id(p)] for p in backbone["params"]}
    assert {"backbone.pos_embed_x", "backbone.pos_embed_z", "backbone.norm.weight"} <= backbone_names
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_frozen_parameters_are_left_out(model):
    model.backbone.cls_token.requires_grad_(False)
    try:
        groups = param_groups(model, 1.0, 0.1)
        assert all(p is not model.backbone.cls_token for g in groups for p in g["params"])
    finally:
        model.backbone.cls_token.requires_grad_(True)


def test_step_schedule_drops_tenfold_after_lr_drop_epoch(model):
    cfg = TrainConfig(epochs=5, lr_drop_epoch=3)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([4e-4, 4e-4, 4e-4, 4e-5, 4e-5])


def test_gradient_clipping_to_total_norm():
    layer = torch.nn.Linear(3, 3)
    for p in layer.parameters():
        p.grad = torch.full_like(p, 10.0)
    before = clip_gradients(layer, 0.1)
    total = torch.sqrt(sum((p.grad**2).sum() for p in layer.parameters()))
    assert before == pytest.approx(10.0 * 12**0.5) and total.item() == pytest.approx(0.1, rel=1e-4)
