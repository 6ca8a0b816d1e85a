from __future__ import annotations

import json
import os
import sys

import pytest
from typer.testing import CliRunner

from grm.train import main
from grm.train.checkpoint import load_checkpoint
from grm.train.cli import app, torchrun_command
from grm.train.monitor import read_metrics
from tests.badinput import Hint, check_hint, check_one_line_failure, run_main

runner = CliRunner()


def test_synth_writes_the_got10k_layout(tmp_path):
    result = runner.invoke(
        app,
        [
            "synth",
            "--output",
            str(tmp_path),
            "--sequences",
            "2",
            "--seed",
            "4",
            "--min-frames",
            "20",
            "--max-frames",
            "22",
        ],
    )
    assert result.exit_code == 0, result.output
    root = tmp_path / "train"
    assert result.stdout.splitlines()[-2:] == [
        f"wrote {root}/ (2 generated sequences, GOT-10k layout)",
        f"next: grm-train --config tiny --got10k-dir {root} --output runs/synth",
    ]
    assert (root / "list.txt").read_text().split() == ["GOT-10k_Train_000001", "GOT-10k_Train_000002"]
    seq = root / "GOT-10k_Train_000001"
    n = len((seq / "groundtruth.txt").read_text().splitlines())
    assert 20 <= n <= 22 and len(list(seq.glob("*.jpg"))) == n
    assert len((seq / "absence.label").read_text().split()) == n == len((seq / "cover.label").read_text().split())


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    def fails(argv, *fragments):  # noqa: ANN001, ANN202
        check_one_line_failure(run_main(main, argv, capsys), 2, "grm-train", ["grm-train: error: ", *fragments])

    fails(["synth", "--output", str(tmp_path), "--sequences", "1", "--min-frames", "5"], "need 20 <=")
    monkeypatch.setenv("GRM_GOT10K_DIR", "")
    fails(
        [
            "--config",
            "tiny",
            "--output",
            str(tmp_path / "run"),
            "--data-root",
            str(tmp_path / "missing"),
            "--no-progress",
        ],
        "GOT-10k root",
    )
    fails(["--config", "tinny", "--output", str(tmp_path / "run")], "did you mean 'tiny'")
    fails(["--config", "tiny"], "--output is required")
    fails(["export", str(tmp_path / "nope.pt"), str(tmp_path / "out.pth.tar")], "checkpoint not found")


def test_torchrun_command_forwards_the_command_line_without_nproc():
    argv = [
        "--config",
        "vitb_256",
        "--nproc",
        "4",
        "--output",
        "/runs/a",
        "--amp",
        "bf16",
        "--nproc=4",
        "--resume",
        "--threads",
        "1",
    ]
    cmd = torchrun_command(4, argv)
    assert cmd[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
    assert cmd[6:] == [
        "grm.train.cli",
        "--config",
        "vitb_256",
        "--output",
        "/runs/a",
        "--amp",
        "bf16",
        "--resume",
        "--threads",
        "1",
    ]


def test_nproc_hands_every_option_given_to_torchrun(tmp_path, monkeypatch):
    """Every option the user gave (whatever it is) reaches the ranks as typed; torchrun itself is not run."""
    import grm.train.cli as cli

    launched: list[list[str]] = []
    monkeypatch.setattr(cli, "_launch", lambda command, output: launched.append(command) or 0)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    args = [
        "--config",
        "tiny",
        "--output",
        str(tmp_path / "run"),
        "--nproc",
        "2",
        "--epochs",
        "3",
        "--amp",
        "bf16",
        "--val-interval",
        "5",
        "--backbone-multiplier",
        "1.0",
        "--no-progress",
        "--keep",
        "4",
        "--resume",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (command,) = launched
    assert command[command.index("grm.train.cli") + 1 :] == [a for a in args if a not in ("--nproc", "2")]


def test_two_process_gloo_ddp_run(synth_root, tmp_path):
    """--nproc 2 launches torchrun; both ranks train on CPU with gloo, rank 0 writes checkpoints and metrics."""
    out = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    args = [
        "--config",
        "tiny",
        "--got10k-dir",
        str(synth_root),
        "--output",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--samples-per-epoch",
        "8",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--nproc",
        "2",
        "--no-progress",
        "--log-interval",
        "1",
    ]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    (epoch,) = read_metrics(out / "metrics.jsonl", "epoch")
    assert epoch["step"] == 1 and epoch["samples_per_second"] > 0
    iters = read_metrics(out / "metrics.jsonl", "iter")
    assert [r["step"] for r in iters] == [1, 2]  # 8 samples / 2 ranks / batch 2
    load_checkpoint(out / "checkpoints" / "GRM_ep0001.pth.tar", "tiny")
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["kind"] == "iter"


@pytest.mark.parametrize("amp", ["bf16"])
def test_single_process_cli_run_with_amp(synth_root, tmp_path, amp):
    out = tmp_path / "run"
    args = [
        "--config",
        "tiny",
        "--got10k-dir",
        str(synth_root),
        "--output",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--samples-per-epoch",
        "2",
        "--workers",
        "0",
        "--amp",
        amp,
        "--threads",
        "1",
        "--val-root",
        str(synth_root),
        "--val-sequences",
        "1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "epoch 1: loss" in result.output
    assert "tensorboard" not in result.output.lower()
    lines = result.output.splitlines()
    official = out / "checkpoints" / "GRM_ep0001.pth.tar"
    assert lines[-4:] == [
        f"wrote {out / 'checkpoints'}/ (checkpoints; newest checkpoint_0001.pt for --resume, GRM_ep0001.pth.tar in "
        "the official format)",
        f"wrote {out / 'metrics.jsonl'} (metrics log, one JSON object per line)",
        f"next: grm-train evaluate {official} --val-root {synth_root}",
        f"next: grm-export --config tiny --checkpoint {official}",
    ]
    for line in lines[-2:]:
        check_hint(Hint("grm-train output", line.removeprefix("next: ")))
    (val,) = read_metrics(out / "metrics.jsonl", "val")
    assert 0 <= val["val_auc"] <= 100 and val["val_sequences"] == 1
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(out / "checkpoints" / "checkpoint_0001.pt"),
            "--val-root",
            str(synth_root),
            "--sequences",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"AUC {val['val_auc']:.2f}  static-box AUC {val['val_static_auc']:.2f}" in result.output


def test_worker_errors_are_reported_as_their_original_line():
    from grm.runtime.errors import DatasetError
    from grm.train.cli import _one_line

    wrapped = DatasetError(
        "Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
        'last):\n  File "x.py", line 1\ngrm.runtime.errors.DatasetError: frame a.jpg does not exist'
    )
    assert _one_line(wrapped) == "frame a.jpg does not exist"
    assert _one_line(DatasetError("plain")) == "plain"
