"""``grm-train``: train GRM (one process, ``--nproc N`` local ranks, or under ``torchrun``), generate
synthetic data (``grm-train synth``) and convert checkpoints to the official format (``grm-train export``).

User errors print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from grm.runtime.errors import GrmError

app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False)
log = logging.getLogger("grm.train")

# option name -> CLI flag, for forwarding a parsed command line to torchrun
_FORWARDED = {
    "config": "--config", "data_root": "--data-root", "output": "--output", "pretrained": "--pretrained",
    "epochs": "--epochs", "batch_size": "--batch-size", "samples_per_epoch": "--samples-per-epoch",
    "workers": "--workers", "amp": "--amp", "lasot_dir": "--lasot-dir", "got10k_dir": "--got10k-dir",
    "trackingnet_dir": "--trackingnet-dir", "coco_dir": "--coco-dir", "val_root": "--val-root",
    "val_interval": "--val-interval", "val_sequences": "--val-sequences", "seed": "--seed", "device": "--device",
    "keep": "--keep", "log_interval": "--log-interval",
}


def _fail(error: Exception, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(code)


def torchrun_command(nproc: int, params: dict[str, Any], resume: bool, no_progress: bool) -> list[str]:
    """The argument list that runs this training on ``nproc`` local ranks through ``torch.distributed.run``."""
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "grm.train.cli"]
    for name, flag in _FORWARDED.items():
        value = params.get(name)
        if value is not None:
            args += [flag, str(value)]
    if resume:
        args.append("--resume")
    if no_progress:
        args.append("--no-progress")
    return args


@app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
    config: str = typer.Option("vitb_256", help="Config name (vitb_256, vitb_256_got, vitl_320, tiny)."),
    data_root: Path | None = typer.Option(None, help="Folder with lasot/, got10k/, trackingnet/, coco/ sub-folders."),
    output: Path | None = typer.Option(None, help="Run folder: checkpoints/, metrics.jsonl, tensorboard/."),
    pretrained: Path | None = typer.Option(None, help="MAE/DeiT ViT checkpoint for the backbone."),
    epochs: int | None = typer.Option(None, help="Override the recipe's epoch count."),
    batch_size: int | None = typer.Option(None, help="Per-process batch size."),
    samples_per_epoch: int | None = typer.Option(None, help="Samples drawn per epoch (all ranks together)."),
    workers: int | None = typer.Option(None, help="Data-loading worker processes per rank."),
    nproc: int = typer.Option(1, help="Local processes to launch through torchrun (one per GPU)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in OUTPUT."),
    amp: str | None = typer.Option(None, help="Mixed precision: bf16 or fp16 (default: fp32, the official recipe)."),
    lasot_dir: Path | None = typer.Option(None, help="LaSOT root (else GRM_LASOT_DIR, else DATA_ROOT/lasot)."),
    got10k_dir: Path | None = typer.Option(None, help="GOT-10k train root (else GRM_GOT10K_DIR, else DATA_ROOT/got10k)."),
    trackingnet_dir: Path | None = typer.Option(None, help="TrackingNet root (else GRM_TRACKINGNET_DIR ...)."),
    coco_dir: Path | None = typer.Option(None, help="COCO 2017 root (else GRM_COCO_DIR, else DATA_ROOT/coco)."),
    val_root: Path | None = typer.Option(None, help="Held-out sequences (GOT-10k layout) for AUC validation."),
    val_interval: int = typer.Option(20, help="Validate every N epochs (and after the last)."),
    val_sequences: int | None = typer.Option(None, help="Validate on at most N sequences."),
    seed: int | None = typer.Option(None, help="Base seed (default: the config's, 42)."),
    device: str | None = typer.Option(None, help="torch device (default cuda:<local rank> if present, else cpu)."),
    keep: int = typer.Option(2, help="Resumable checkpoints to keep."),
    log_interval: int = typer.Option(50, help="Iterations between metrics.jsonl lines."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Train GRM with the official recipe of CONFIG."""
    if ctx.invoked_subcommand is not None:
        return
    params = {k: v for k, v in ctx.params.items() if k in _FORWARDED}
    if output is None:
        raise _fail(GrmError("--output is required (the run folder)"))
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        command = torchrun_command(nproc, params, resume, no_progress)
        raise typer.Exit(subprocess.run(command, check=False).returncode)  # noqa: S603 - fixed argument list
    try:
        _run_training(params, resume, no_progress)
    except GrmError as e:
        raise _fail(e) from e


def _run_training(params: dict[str, Any], resume: bool, no_progress: bool) -> None:
    from grm.train.data.sources import DatasetRoots
    from grm.train.distributed import dist_info_from_env, init_distributed, shutdown_distributed
    from grm.train.losses import LossError
    from grm.train.trainer import Trainer, TrainOptions

    info = dist_info_from_env()
    logging.basicConfig(level=logging.INFO if info.is_main else logging.WARNING,
                        format=f"%(asctime)s [rank {info.rank}] %(message)s")
    roots = DatasetRoots(data_root=params["data_root"], explicit={k: params[f"{k}_dir"] for k in
                                                                 ("lasot", "got10k", "trackingnet", "coco")})
    options = TrainOptions(
        config=params["config"], output=params["output"], roots=roots, epochs=params["epochs"],
        batch_size=params["batch_size"], samples_per_epoch=params["samples_per_epoch"], num_workers=params["workers"],
        amp=params["amp"], pretrained=params["pretrained"], resume=resume, val_root=params["val_root"],
        val_interval=params["val_interval"], val_sequences=params["val_sequences"], seed=params["seed"],
        device=params["device"], keep=params["keep"], log_interval=params["log_interval"],
    )
    from grm.train.distributed import choose_device

    init_distributed(info, choose_device(info, options.device))
    try:
        callbacks = _progress_callbacks() if info.is_main and not no_progress else None
        result = Trainer(options, info, callbacks).fit()
    except LossError as e:
        raise _fail(e, code=1) from e
    finally:
        shutdown_distributed()
    if info.is_main and result:
        typer.echo("done: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items() if k in ("loss", "iou", "val_auc")))


def _progress_callbacks() -> Any:
    from tqdm import tqdm

    from grm.train.trainer import Callbacks, StepInfo

    bars: dict[str, Any] = {}

    def start(epoch: int, iterations: int) -> None:
        bars["bar"] = tqdm(total=iterations, desc=f"epoch {epoch}", unit="it", dynamic_ncols=True)

    def step(s: StepInfo) -> None:
        bar = bars["bar"]
        bar.set_postfix(loss=f"{s.stats['loss']:.3f}", iou=f"{s.stats['iou']:.2f}",
                        rate=f"{s.samples_per_second:.1f}/s", refresh=False)
        bar.update(1)

    def end(epoch: int, means: dict[str, float]) -> None:
        bars.pop("bar").close()
        typer.echo(f"epoch {epoch}: loss {means['loss']:.4f} giou {means['giou']:.4f} l1 {means['l1']:.4f} "
                   f"focal {means['focal']:.4f} iou {means['iou']:.3f} {means['samples_per_second']:.1f} samples/s "
                   f"skipped {int(means['skipped'])}")

    return Callbacks(on_epoch_start=start, on_step=step, on_epoch_end=end)


@app.command()
def synth(
    output: Path = typer.Option(..., help="Dataset folder; sequences go to OUTPUT/<subset>/."),
    sequences: int = typer.Option(..., help="Number of sequences."),
    seed: int = typer.Option(0, help="Family seed: the same seed always gives the same sequences."),
    subset: str = typer.Option("train", help="Sub-folder name (train, val, ...)."),
    min_frames: int = typer.Option(60, help="Shortest sequence."),
    max_frames: int = typer.Option(120, help="Longest sequence."),
) -> None:
    """Write generated sequences in the GOT-10k layout (train/<seq>/%08d.jpg, groundtruth.txt, labels, list.txt)."""
    from tqdm import tqdm

    from grm.train.data.synth import SynthSpec, write_dataset

    try:
        if min_frames < 20 or max_frames < min_frames:
            raise GrmError(f"need 20 <= --min-frames <= --max-frames; got {min_frames}, {max_frames}")
        with tqdm(total=sequences, desc="sequences", unit="seq") as bar:
            root = write_dataset(output, sequences, seed=seed, subset=subset,
                                 spec=SynthSpec(min_frames=min_frames, max_frames=max_frames), progress=bar.update)
    except GrmError as e:
        raise _fail(e) from e
    typer.echo(f"wrote {sequences} sequences to {root}")


@app.command("export")
def export_cmd(
    checkpoint: Path = typer.Argument(..., help="A grm-train checkpoint_NNNN.pt."),
    output: Path = typer.Argument(..., help="Official-format file to write (GRM_epNNNN.pth.tar)."),
    with_optimizer: bool = typer.Option(False, "--with-optimizer", help="Also store the optimiser state."),
) -> None:
    """Convert a training checkpoint to the official GRM format (key ``net``)."""
    from grm.train.checkpointing import export_official

    try:
        path = export_official(checkpoint, output, with_optimizer=with_optimizer)
    except GrmError as e:
        raise _fail(e) from e
    typer.echo(f"wrote {path}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
