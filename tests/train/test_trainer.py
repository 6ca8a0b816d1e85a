from __future__ import annotations

import numpy as np
import pytest

from grm.runtime.errors import ConfigError
from grm.train.config import get_config
from grm.train.data.sampler import collate
from grm.train.data.sources import DatasetRoots
from grm.train.distributed import DistInfo, RankIndices, dist_info_from_env
from grm.train.trainer import Trainer, TrainOptions


def test_loss_falls_on_a_repeated_batch(synth_root, tmp_path):
    trainer = Trainer(
        TrainOptions(
            config="tiny",
            output=tmp_path,
            roots=DatasetRoots(explicit={"got10k": synth_root}),
            batch_size=2,
            samples_per_epoch=2,
            num_workers=0,
        )
    )
    batch = collate([trainer.sampler[i] for i in range(2)])
    losses = [trainer.train_step(batch)["loss"] for _ in range(12)]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


def test_overrides_and_option_checks(tmp_path):
    cfg = TrainOptions(config="vitb_256", output=tmp_path, epochs=30, batch_size=4).resolved_config()
    assert (cfg.train.epochs, cfg.train.lr_drop_epoch, cfg.train.batch_size) == (30, 24, 4)
    assert TrainOptions(config="vitb_256", output=tmp_path).resolved_config().train.lr_drop_epoch == 240
    scratch = TrainOptions(config="tiny", output=tmp_path, backbone_multiplier=1.0).resolved_config().train
    assert scratch.backbone_multiplier == 1.0 and get_config("tiny").train.backbone_multiplier == 0.1
    with pytest.raises(ConfigError, match="--amp"):
        TrainOptions(config="tiny", output=tmp_path, amp="fp8")
    with pytest.raises(ConfigError, match="--epochs"):
        TrainOptions(config="tiny", output=tmp_path, epochs=0)
    assert TrainOptions(config="tiny", output=tmp_path, lr=4e-5).resolved_config().train.lr == 4e-5
    with pytest.raises(ConfigError, match="--lr"):
        TrainOptions(config="tiny", output=tmp_path, lr=0.0)


def test_rank_indices_are_disjoint_and_equal_sized():
    shards = [list(RankIndices(10, r, 3)) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert sorted(sum(shards, [])) == list(range(9))
    assert dist_info_from_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}) == DistInfo(1, 2, 1)
    assert dist_info_from_env({}) == DistInfo()


def test_validation_scores_with_the_benchmark_metrics(synth_root):
    from grm.benchmarks.metrics import score_boxes
    from grm.train.data.got10k import Got10k
    from grm.train.model import build_model
    from grm.train.validation import validate

    result = validate(build_model("tiny"), synth_root, max_sequences=2)
    ds = Got10k(synth_root)
    gts = [ds.sequence_info(i).boxes.astype(np.float64) for i in range(2)]
    static = score_boxes(
        [np.repeat(g[:1], len(g), axis=0) for g in gts], gts, visible=[ds.sequence_info(i).visible for i in range(2)]
    )
    assert result.sequences == 2 and result.frames == sum(len(g) for g in gts)
    assert result.static_auc == pytest.approx(static.auc) and 0 <= result.auc <= 100


def test_pretrained_backbone_goes_through_adapt_pretrained(synth_root, tmp_path):
    import torch

    from grm.train.model import build_model

    source = build_model("tiny").state_dict()
    vit = {
        k.removeprefix("backbone."): v.clone()
        for k, v in source.items()
        if k.startswith("backbone.") and "divide" not in k and "pos_embed_" not in k
    }
    vit["decoder_embed.weight"] = torch.zeros(2, 2)  # an MAE decoder key, dropped by the adapter
    path = tmp_path / "mae_like.pth"
    torch.save({"model": vit}, path)
    trainer = Trainer(
        TrainOptions(
            config="tiny",
            output=tmp_path / "run",
            pretrained=path,
            roots=DatasetRoots(explicit={"got10k": synth_root}),
            num_workers=0,
        )
    )
    got = trainer.model.state_dict()
    assert torch.equal(got["backbone.blocks.1.mlp.fc1.weight"], vit["blocks.1.mlp.fc1.weight"])
    assert torch.equal(got["backbone.patch_embed.proj.weight"], vit["patch_embed.proj.weight"])


def test_a_grm_checkpoint_initialises_every_weight_for_fine_tuning(synth_root, tmp_path):
    import torch

    from grm.train.model import build_model

    torch.manual_seed(7)
    source = build_model("tiny")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path / "GRM_ep0020.pth.tar"
    torch.save({"net": source.state_dict()}, path)
    trainer = Trainer(
        TrainOptions(
            config="tiny",
            output=tmp_path / "run",
            pretrained=path,
            roots=DatasetRoots(explicit={"got10k": synth_root}),
            num_workers=0,
        )
    )
    got = trainer.model.state_dict()
    for key in (
        "box_head.conv1_ctr.0.weight",
        "backbone.pos_embed_x",
        "backbone.blocks.1.attn.divide_predict.0.weight",
    ):
        assert torch.equal(got[key], source.state_dict()[key]), key
