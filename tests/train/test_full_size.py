"""Full-size configs: official-format checkpoints load strictly and run (slow: ~100M-300M parameters)."""

from __future__ import annotations

import pytest
import torch

from grm.train import build_model, load_checkpoint

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("name", "epoch"), [("vitb_256", 300), ("vitb_256_got", 100), ("vitl_320", 300)])
def test_official_format_round_trip(tmp_path, name, epoch):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = build_model(name).eval()
    path = tmp_path / f"GRM_ep{epoch:04d}.pth.tar"
    torch.save(
        {
            "epoch": epoch,
            "actor_type": "GRMActor",
            "net_type": "GRM",
            "net": model.state_dict(),
            "net_info": None,
            "constructor": None,
            "optimizer": {},
            "stats": {},
            "settings": None,
        },
        path,
    )
    loaded = load_checkpoint(path)  # config inferred from shapes and epoch
    assert loaded.config.name == name
    t, s = model.config.tracker.template_size, model.config.tracker.search_size
    template, search = torch.randn(1, 3, t, t), torch.randn(1, 3, s, s)
    with torch.no_grad():
        for threshold in (0.0, 0.4):
            a = model(template, search, threshold=threshold, return_decisions=True)
            b = loaded(template, search, threshold=threshold, return_decisions=True)
            for x, y in zip(a, b, strict=True):
                assert torch.equal(x, y)
    f = model.config.tracker.feat_size
    assert a.score_map.shape == (1, 1, f, f) and a.decisions.shape == (1, model.config.model.depth - 1, f * f)
