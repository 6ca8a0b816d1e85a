"""Full-size vitb_256 export with official key names (random weights, mixed division decisions). Slow: minutes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from grm.export.pipeline import ExportOptions, run_export
from grm.train import build_model

pytestmark = pytest.mark.slow


def write_official_layout_checkpoint(path: Path, config: str = "vitb_256", seed: int = 0) -> Path:
    """A checkpoint in the official trainer's layout (weights under ``net``) with random weights.

    The division predictors get extra seeded noise (std 1/sqrt(fan_in)) so that tokens split between the two
    groups at every threshold instead of all sitting at p = 0.5, as a fresh initialisation would.
    """
    torch.manual_seed(seed)
    model = build_model(config).eval()
    gen = torch.Generator().manual_seed(seed + 10000)
    with torch.no_grad():
        for block in model.backbone.blocks[1:]:
            for layer in block.attn.divide_predict:
                if isinstance(layer, torch.nn.Linear):
                    layer.weight.add_(torch.randn(layer.weight.shape, generator=gen) / layer.weight.shape[1] ** 0.5)
    torch.save({"net": model.state_dict(), "epoch": 300}, path)
    return path


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_vitb_256_export_matches_pytorch(tmp_path: Path, real_sequences: Path, fp16: bool) -> None:
    checkpoint = write_official_layout_checkpoint(tmp_path / "GRM_ep0300.pth.tar")
    options = ExportOptions(
        config="vitb_256",
        checkpoint=checkpoint,
        output=tmp_path / "grm_vitb_256.onnx",
        fp16=fp16,
        with_decisions=True,
        parity_data=real_sequences,
    )
    result = run_export(options)
    assert result.report is not None and result.report.passed
    for stats in result.report.thresholds:
        if fp16:
            assert stats.decision_agreement >= 0.99 and stats.mean_iou >= 0.99
        else:
            assert stats.decision_agreement == 1.0 and max(stats.max_abs.values()) <= 1e-4
    assert result.onnx.path.stat().st_size > 150e6 and not Path(str(result.onnx.path) + ".data").exists()
