from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from grm.runtime.errors import CheckpointError, Interrupted
from grm.train import checkpointing as ckpt
from grm.train.checkpoint import load_checkpoint, read_checkpoint
from grm.train.data.sources import DatasetRoots
from grm.train.monitor import read_metrics
from grm.train.trainer import Callbacks, StepInfo, Trainer, TrainOptions


class _Crash(Exception):
    pass


def _options(synth_root: Path, output: Path, **kw) -> TrainOptions:
    values = {"epochs": 2, "batch_size": 2, "samples_per_epoch": 4, "num_workers": 0, "log_interval": 1, **kw}
    return TrainOptions(config="tiny", output=output, roots=DatasetRoots(explicit={"got10k": synth_root}), **values)


def _crash_at_epoch(n: int) -> Callbacks:
    def start(epoch: int, iterations: int) -> None:
        if epoch == n:
            raise _Crash

    return Callbacks(on_epoch_start=start)


def test_resume_reproduces_the_uninterrupted_run(synth_root, tmp_path):
    full = Trainer(_options(synth_root, tmp_path / "full"))
    full.fit()
    with pytest.raises(_Crash):
        Trainer(_options(synth_root, tmp_path / "cut"), callbacks=_crash_at_epoch(2)).fit()
    assert [p.name for p in ckpt.project_checkpoints(tmp_path / "cut" / "checkpoints")] == ["checkpoint_0001.pt"]
    with pytest.raises(CheckpointError, match="pass --resume"):
        Trainer(_options(synth_root, tmp_path / "cut"))
    resumed = Trainer(_options(synth_root, tmp_path / "cut", resume=True))
    assert resumed.start_epoch == 1
    resumed.fit()
    a = read_metrics(tmp_path / "full" / "metrics.jsonl", "epoch")
    b = read_metrics(tmp_path / "cut" / "metrics.jsonl", "epoch")
    assert [r["step"] for r in b] == [1, 2]
    for key in ("loss", "giou", "l1", "focal", "lr_head"):
        assert a[1][key] == b[1][key], key
    state_a, state_b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def _ctrl_c_at(epoch_n: int, iteration_n: int) -> Callbacks:
    """Send this process a real SIGINT right after the given iteration, as a terminal's Ctrl-C would."""

    def step(info: StepInfo) -> None:
        if (info.epoch, info.iteration) == (epoch_n, iteration_n):
            os.kill(os.getpid(), signal.SIGINT)

    return Callbacks(on_step=step)


def test_ctrl_c_mid_epoch_saves_the_step_and_resume_is_exact(synth_root, tmp_path):
    """Ctrl-C inside epoch 2 saves there; --resume continues with the same data, optimiser, schedule and RNG."""
    opts = {"samples_per_epoch": 8}  # 4 iterations per epoch
    full = Trainer(_options(synth_root, tmp_path / "full", **opts))
    full.fit()
    with pytest.raises(
        Interrupted,
        match=r"saved .*checkpoint_0002_step000002\.pt at epoch 2, iteration 2 of 4; "
        r"continue with the same command and --resume",
    ):
        Trainer(_options(synth_root, tmp_path / "cut", **opts), callbacks=_ctrl_c_at(2, 2)).fit()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored
    names = [p.name for p in ckpt.project_checkpoints(tmp_path / "cut" / "checkpoints")]
    assert names == ["checkpoint_0001.pt", "checkpoint_0002_step000002.pt"]
    resumed = Trainer(_options(synth_root, tmp_path / "cut", resume=True, **opts))
    assert (resumed.start_epoch, resumed.start_step, resumed.global_step) == (1, 2, 6)
    resumed.fit()
    a = read_metrics(tmp_path / "full" / "metrics.jsonl")
    b = read_metrics(tmp_path / "cut" / "metrics.jsonl")
    assert [(r["kind"], r["step"]) for r in a] == [(r["kind"], r["step"]) for r in b]  # no iteration twice
    epoch_a, epoch_b = (
        (r for r in a if r["kind"] == "epoch" and r["step"] == 2),
        (r for r in b if r["kind"] == "epoch" and r["step"] == 2),
    )
    row_a, row_b = next(epoch_a), next(epoch_b)
    for key in ("loss", "giou", "l1", "focal", "iou", "lr_head", "skipped"):
        assert row_a[key] == row_b[key], key
    state_a, state_b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    opt_a, opt_b = full.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(opt_a[i]["exp_avg_sq"], opt_b[i]["exp_avg_sq"]) for i in opt_a)
    assert full.scheduler.state_dict() == resumed.scheduler.state_dict()


def test_checkpoint_names_sort_in_training_order(tmp_path):
    for name in (
        "checkpoint_0002.pt",
        "checkpoint_0003_step000010.pt",
        "checkpoint_0001.pt",
        "checkpoint_0002_step000005.pt",
        "checkpoint_0003.pt",
        "notes.pt",
    ):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in ckpt.project_checkpoints(tmp_path)] == [
        "checkpoint_0001.pt",
        "checkpoint_0002_step000005.pt",
        "checkpoint_0002.pt",
        "checkpoint_0003_step000010.pt",
        "checkpoint_0003.pt",
    ]
    assert ckpt.checkpoint_name(2, 10) == "checkpoint_0003_step000010.pt" and ckpt.checkpoint_name(3) == (
        "checkpoint_0003.pt"
    )


def test_official_export_loads_strictly(synth_root, tmp_path):
    trainer = Trainer(_options(synth_root, tmp_path / "run", epochs=1))
    trainer.fit()
    official = tmp_path / "run" / "checkpoints" / "GRM_ep0001.pth.tar"  # epoch > EPOCH - 5: written
    data = read_checkpoint(official)
    assert set(data) == {
        "epoch",
        "actor_type",
        "net_type",
        "net",
        "net_info",
        "constructor",
        "optimizer",
        "stats",
        "settings",
    }
    assert (data["actor_type"], data["net_type"], data["epoch"]) == ("GRMActor", "GRM", 1)
    model = load_checkpoint(official, "tiny")
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in model.state_dict().items())
    exported = ckpt.export_official(
        tmp_path / "run" / "checkpoints" / "checkpoint_0001.pt", tmp_path / "GRM_ep0001.pth.tar"
    )
    assert read_checkpoint(exported)["optimizer"] is None
    load_checkpoint(exported, "tiny")


def test_atomic_save_keeps_newest_and_rejects_foreign_files(tmp_path):
    layer = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(layer.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    for epoch in (1, 2, 3):
        ckpt.save_training_state(
            tmp_path, model=layer, optimizer=opt, scheduler=sched, epoch=epoch, config_name="tiny", keep=2
        )
    assert [p.name for p in ckpt.project_checkpoints(tmp_path)] == ["checkpoint_0002.pt", "checkpoint_0003.pt"]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    ckpt.save_official(tmp_path / "GRM_ep0003.pth.tar", layer, 3)
    with pytest.raises(CheckpointError, match="not a grm-train checkpoint"):
        ckpt.load_training_state(tmp_path / "GRM_ep0003.pth.tar")
    data = ckpt.load_training_state(tmp_path / "checkpoint_0003.pt")
    with pytest.raises(CheckpointError, match="cannot resume a tiny run"):
        ckpt.restore_training_state(data, model=layer, optimizer=opt, scheduler=sched, config_name="vitb_256")


def test_rng_state_round_trip():
    state = ckpt.rng_state()
    first = (torch.rand(3), __import__("numpy").random.rand(2).tolist(), __import__("random").random())
    ckpt.set_rng_state(state)
    second = (torch.rand(3), __import__("numpy").random.rand(2).tolist(), __import__("random").random())
    assert torch.equal(first[0], second[0]) and first[1:] == second[1:]
