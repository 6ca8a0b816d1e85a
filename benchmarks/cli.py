"""grm-bench: run, score and time GRM models on tracking benchmarks. Never imports torch.

'grm-bench --dataset uav --engine grm.plan' runs the benchmark and scores it; 'grm-bench analyze',
'grm-bench speed' and 'grm-bench pack' are the single steps. User errors print one line and exit 2.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from grm.benchmarks import pipeline
from grm.benchmarks.analysis import PROTOCOLS, analyze
from grm.benchmarks.datasets import DATASETS, open_dataset
from grm.benchmarks.engine import EngineOpener
from grm.benchmarks.report import summary_table, write_report
from grm.benchmarks.results import result_sets
from grm.benchmarks.run import SequenceRun, parse_shard, run_benchmark, select
from grm.benchmarks.speed import measure, measure_isolated, speed_report, update_results_file
from grm.benchmarks.submission import FORMATS, pack
from grm.benchmarks.textio import write_atomic
from grm.runtime.errors import GrmError, InputError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__)
COMMANDS = ("run", "analyze", "speed", "pack")
Dataset_ = Annotated[str, typer.Option("--dataset", help=f"One of: {', '.join(DATASETS)}.")]
DataRoot = Annotated[Path | None, typer.Option("--data-root", help="Dataset root (else $GRM_<DATASET>_ROOT).")]
Backend_ = Annotated[str, typer.Option("--backend", help="auto, onnxruntime, ort-cuda, ort-tensorrt, tensorrt, torch.")]


def user_errors(fn: Callable[..., None]) -> Callable[..., None]:
    """GrmError -> one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except GrmError as e:
            typer.echo(f"grm-bench: error: {e}", err=True)
            raise typer.Exit(2) from e

    return wrapper


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise InputError(f"--protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")


@app.command("run", help="Run one-pass evaluation, then score it (the default command).")
@user_errors
def run_cmd(
    dataset: Dataset_,
    engine: Annotated[str, typer.Option("--engine", help=".onnx, .plan/.engine or checkpoint.")],
    data_root: DataRoot = None,
    results_dir: Annotated[Path, typer.Option(envvar="GRM_RESULTS_DIR", help="Root of result folders.")] = Path(
        "results"
    ),
    label: Annotated[str | None, typer.Option(help="Tracker label and folder name (default: model file name).")] = None,
    backend: Backend_ = "auto",
    config: Annotated[str | None, typer.Option(help="Config name (raw checkpoints).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU inference threads.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Override the dataset's division threshold preset.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Sequences tracked in parallel processes.")] = 1,
    shard: Annotated[str, typer.Option(help="Run shard i of n (1-based), e.g. 2/4.")] = "1/1",
    sequence: Annotated[list[str] | None, typer.Option(help="Only this sequence (repeatable).")] = None,
    partial: Annotated[bool, typer.Option(help="Use only the sequences present under the root.")] = False,
    protocol: Annotated[str, typer.Option(help="pytracking or otb.")] = "pytracking",
    analyze_after: Annotated[bool, typer.Option("--analyze/--no-analyze", help="Score when complete.")] = True,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
) -> None:
    _check_protocol(protocol)
    ds = open_dataset(dataset, data_root, partial=partial)
    opener = EngineOpener(engine, backend, config, threads)
    name = label or pipeline.run_label(opener.label, threshold)
    folder = pipeline.results_folder(results_dir, name, dataset)
    todo = select(ds.sequence_names(), parse_shard(shard), tuple(sequence or ()))
    with tqdm(total=len(todo), unit="seq", desc=dataset) as seqs, tqdm(unit="frame", leave=False) as frames:

        def on_sequence(r: SequenceRun) -> None:
            seqs.set_postfix_str(f"{r.name} {'skipped' if r.skipped else f'{r.frames} frames'}")
            seqs.update()

        def on_frame(name: str, i: int, total: int) -> None:
            if frames.total != total:
                frames.reset(total=total)
                frames.set_description(name)
            frames.update()

        summary = run_benchmark(
            ds,
            folder,
            opener,
            label=name,
            model=engine,
            threshold=threshold,
            workers=workers,
            shard=parse_shard(shard),
            only=tuple(sequence or ()),
            on_sequence=on_sequence,
            on_frame=on_frame,
        )
    fps = f", {summary.fps:.1f} fps" if summary.fps else ""
    typer.echo(
        f"{len(summary.ran)} sequences tracked, {len(summary.skipped)} already done{fps}; threshold {summary.threshold:g}; results in {folder}"
    )
    if not analyze_after:
        return
    if not ds.has_ground_truth:
        typer.echo(f"{dataset} is scored by its server: grm-bench pack --dataset {dataset} --results {folder}")
    elif sequence or not pipeline.is_complete(ds, folder):
        typer.echo(
            f"run incomplete for scoring; merge shard folders with grm-bench analyze --dataset {dataset} --results DIR ..."
        )
    else:
        report, written = pipeline.report_run(ds, folder, name, protocol, plots)
        typer.echo(summary_table(report))
        typer.echo("wrote " + ", ".join(str(p) for p in written))


@app.command("analyze", help="Score result folders side by side (folders with the same label are merged).")
@user_errors
def analyze_cmd(
    dataset: Dataset_,
    results: Annotated[list[str], typer.Option("--results", help="Result folder or LABEL=DIR (repeatable).")],
    data_root: DataRoot = None,
    protocol: Annotated[str, typer.Option(help="pytracking or otb.")] = "pytracking",
    out: Annotated[Path | None, typer.Option(help="Report folder (default: the first results folder).")] = None,
    skip_missing: Annotated[bool, typer.Option(help="Score only sequences every folder has.")] = False,
    partial: Annotated[bool, typer.Option(help="Use only the sequences present under the root.")] = False,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
) -> None:
    _check_protocol(protocol)
    ds = open_dataset(dataset, data_root, partial=partial)
    sets = result_sets(results, set(DATASETS))
    with tqdm(total=len(ds.sequence_names()) * len(sets), unit="seq", desc="scoring", leave=False) as bar:
        report = analyze(ds, sets, protocol, skip_missing=skip_missing, on_sequence=lambda _: bar.update())
    target = out or sets[0].folders[0]
    written = write_report(report, target)
    if plots:
        from grm.benchmarks.plots import write_plots

        written += write_plots(report, target)
    typer.echo(summary_table(report))
    typer.echo("wrote " + ", ".join(str(p) for p in written))


@app.command("speed", help="Time engines on real frames: fps, latency percentiles, stage split, peak memory.")
@user_errors
def speed_cmd(
    engine: Annotated[list[str], typer.Option("--engine", help="Model file (repeat to compare engines).")],
    source: Annotated[
        str | None, typer.Option(help="Video or frame folder (OTB-style folder: box from its GT).")
    ] = None,
    box: Annotated[str | None, typer.Option(help="Initial box x,y,w,h for --source.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Take the frames from this dataset's sequence.")] = None,
    data_root: DataRoot = None,
    sequence: Annotated[str | None, typer.Option(help="Dataset sequence (default: the first).")] = None,
    frames: Annotated[int, typer.Option(min=2, help="Frames timed per engine.")] = 300,
    warmup: Annotated[int, typer.Option(min=0, help="Warm-up frames (not timed).")] = 10,
    backend: Backend_ = "auto",
    config: Annotated[str | None, typer.Option(help="Config name (raw checkpoints).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU inference threads.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Division threshold (default: dataset preset).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report as JSON.")] = None,
    update_results: Annotated[bool, typer.Option(help="Update the speed section of --results-md.")] = False,
    results_md: Annotated[Path, typer.Option(help="Markdown file for --update-results.")] = Path(
        "benchmarks/RESULTS.md"
    ),
    isolate: Annotated[bool, typer.Option("--isolate/--in-process", help="One fresh process per engine.")] = True,
) -> None:
    clip = pipeline.speed_clip(source, box, dataset, data_root, sequence, frames)
    timer = measure_isolated if isolate else measure
    results = []
    for path in tqdm(engine, unit="engine", desc="timing", leave=False):
        opener = EngineOpener(path, backend, config, threads)
        results.append(timer(opener, clip, opener.label, warmup=warmup, threshold=threshold, dataset=dataset))
    report = speed_report(results, clip, warmup)
    text = json.dumps(report, indent=1)
    if json_out:
        write_atomic(json_out, text)
    if update_results:
        update_results_file(results_md, report)
    typer.echo(text)


@app.command("pack", help="Build the GOT-10k test or TrackingNet server zip from a results folder.")
@user_errors
def pack_cmd(
    dataset: Annotated[str, typer.Option("--dataset", help=f"One of: {', '.join(FORMATS)}.")],
    results: Annotated[Path, typer.Option("--results", help="Results folder of that dataset.")],
    out: Annotated[Path | None, typer.Option(help="Zip path (default: inside the results folder).")] = None,
    data_root: Annotated[Path | None, typer.Option(help="Dataset root, to check the pack is complete.")] = None,
) -> None:
    ds = open_dataset(dataset, data_root) if data_root else None
    typer.echo(f"wrote {pack(dataset, results, out, ds)}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``grm-bench --dataset ...`` without a command means ``grm-bench run --dataset ...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in (*COMMANDS, "--help", "-h"):
        args.insert(0, "run")
    logging.basicConfig(level=logging.WARNING, format="grm-bench: %(levelname)s: %(message)s")
    app(args=args, prog_name="grm-bench")


if __name__ == "__main__":
    main()
