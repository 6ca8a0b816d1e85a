"""'grm-train': train GRM (one process, '--nproc N' local ranks, or under 'torchrun'), generate
synthetic data ('grm-train synth') and convert checkpoints to the official format ('grm-train export').

User errors print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

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
    "keep": "--keep", "log_interval": "--log-interval", "backbone_multiplier": "--backbone-multiplier",
    "threads": "--threads",
}


def _set_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (1 keeps a shared CPU from oversubscription, which slows torch many-fold)."""
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))


def _one_line(error: Exception) -> str:
    """The error's own message; for errors re-raised from a DataLoader worker, the original one."""
    text = str(error).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text.splitlines()[0] if text else type(error).__name__


def _fail(error: Exception, code: int = 2) -> typer.Exit:
    typer.echo(f"grm-train: error: {_one_line(error)}", err=True)
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
    config: Annotated[str, typer.Option(help="Config name (vitb_256, vitb_256_got, vitl_320, tiny).")] = "vitb_256",
    data_root: Annotated[Path | None, typer.Option(help="Folder with lasot/, got10k/, trackingnet/, coco/ sub-folders.")] = None,
    output: Annotated[Path | None, typer.Option(help="Run folder: checkpoints/, metrics.jsonl, tensorboard/.")] = None,
    pretrained: Annotated[Path | None, typer.Option(help="MAE/DeiT ViT checkpoint for the backbone.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the recipe's epoch count.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Per-process batch size.")] = None,
    samples_per_epoch: Annotated[int | None, typer.Option(help="Samples drawn per epoch (all ranks together).")] = None,
    workers: Annotated[int | None, typer.Option(help="Data-loading worker processes per rank.")] = None,
    nproc: Annotated[int, typer.Option(help="Local processes to launch through torchrun (one per GPU).")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in OUTPUT.")] = False,
    amp: Annotated[str | None, typer.Option(help="Mixed precision: bf16 or fp16 (default: fp32, the official recipe).")] = None,
    lasot_dir: Annotated[Path | None, typer.Option(help="LaSOT root (else GRM_LASOT_DIR, else DATA_ROOT/lasot).")] = None,
    got10k_dir: Annotated[Path | None, typer.Option(help="GOT-10k train root (else GRM_GOT10K_DIR, else DATA_ROOT/got10k).")] = None,
    trackingnet_dir: Annotated[Path | None, typer.Option(help="TrackingNet root (else GRM_TRACKINGNET_DIR ...).")] = None,
    coco_dir: Annotated[Path | None, typer.Option(help="COCO 2017 root (else GRM_COCO_DIR, else DATA_ROOT/coco).")] = None,
    val_root: Annotated[Path | None, typer.Option(help="Held-out sequences (GOT-10k layout) for AUC validation.")] = None,
    val_interval: Annotated[int, typer.Option(help="Validate every N epochs (and after the last).")] = 20,
    val_sequences: Annotated[int | None, typer.Option(help="Validate on at most N sequences.")] = None,
    backbone_multiplier: Annotated[float | None, typer.Option(
        help="Backbone learning-rate factor (official 0.1 with a pretrained backbone; 1.0 from scratch).")] = None,
    seed: Annotated[int | None, typer.Option(help="Base seed (default: the config's, 42).")] = None,
    device: Annotated[str | None, typer.Option(help="torch device (default cuda:<local rank> if present, else cpu).")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads per process (default: torch's choice).")] = None,
    keep: Annotated[int, typer.Option(help="Resumable checkpoints to keep.")] = 2,
    log_interval: Annotated[int, typer.Option(help="Iterations between metrics.jsonl lines.")] = 50,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
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
    _set_threads(params["threads"])
    logging.basicConfig(level=logging.INFO if info.is_main else logging.WARNING,
                        format=f"%(asctime)s [rank {info.rank}] %(message)s")
    roots = DatasetRoots(data_root=params["data_root"], explicit={k: params[f"{k}_dir"] for k in
                                                                 ("lasot", "got10k", "trackingnet", "coco")})
    options = TrainOptions(
        config=params["config"], output=params["output"], roots=roots, epochs=params["epochs"],
        batch_size=params["batch_size"], samples_per_epoch=params["samples_per_epoch"], num_workers=params["workers"],
        amp=params["amp"], pretrained=params["pretrained"], resume=resume, val_root=params["val_root"],
        val_interval=params["val_interval"], val_sequences=params["val_sequences"], seed=params["seed"],
        backbone_multiplier=params["backbone_multiplier"],
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
    output: Annotated[Path, typer.Option(help="Dataset folder; sequences go to OUTPUT/<subset>/.")],
    sequences: Annotated[int, typer.Option(help="Number of sequences.")],
    seed: Annotated[int, typer.Option(help="Family seed: the same seed always gives the same sequences.")] = 0,
    subset: Annotated[str, typer.Option(help="Sub-folder name (train, val, ...).")] = "train",
    min_frames: Annotated[int, typer.Option(help="Shortest sequence.")] = 60,
    max_frames: Annotated[int, typer.Option(help="Longest sequence.")] = 120,
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
    checkpoint: Annotated[Path, typer.Argument(help="A grm-train checkpoint_NNNN.pt.")],
    output: Annotated[Path, typer.Argument(help="Official-format file to write (GRM_epNNNN.pth.tar).")],
    with_optimizer: Annotated[bool, typer.Option("--with-optimizer", help="Also store the optimiser state.")] = False,
) -> None:
    """Convert a training checkpoint to the official GRM format (key "net")."""
    from grm.train.checkpointing import export_official

    try:
        path = export_official(checkpoint, output, with_optimizer=with_optimizer)
    except GrmError as e:
        raise _fail(e) from e
    typer.echo(f"wrote {path}")


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="grm-train checkpoint or official GRM_epNNNN.pth.tar.")],
    val_root: Annotated[Path, typer.Option(help="Held-out sequences in the GOT-10k layout.")],
    sequences: Annotated[int | None, typer.Option(help="Use at most N sequences.")] = None,
    config: Annotated[str | None, typer.Option(help="Config name (default: from the checkpoint).")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's choice).")] = None,
) -> None:
    """One-pass AUC of a checkpoint on held-out sequences, next to the static first-box baseline."""
    from tqdm import tqdm

    from grm.train.checkpoint import load_checkpoint
    from grm.train.validation import validate

    _set_threads(threads)
    try:
        model = load_checkpoint(checkpoint, config)
        with tqdm(total=sequences, desc="sequences", unit="seq") as bar:
            result = validate(model, val_root, sequences, progress=bar.update)
    except GrmError as e:
        raise _fail(e) from e
    typer.echo(f"AUC {result.auc:.2f}  static-box AUC {result.static_auc:.2f}  "
               f"({result.sequences} sequences, {result.frames} frames)")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
