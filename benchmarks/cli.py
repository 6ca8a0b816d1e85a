"""grm-bench: run, score and time GRM models on tracking benchmarks. Never imports torch.

'grm-bench --dataset uav --engine grm.plan' runs the benchmark and scores it; 'grm-bench analyze',
'grm-bench speed' and 'grm-bench pack' are the single steps. User errors print one line and exit 2.
A model file is --model, as in every grm command; --engine is the same option.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from grm.benchmarks import pipeline
from grm.benchmarks.analysis import PROTOCOLS, analyze
from grm.benchmarks.datasets import DATASETS, open_dataset
from grm.benchmarks.engine import EngineOpener
from grm.benchmarks.report import summary_table, write_report
from grm.benchmarks.results import MANIFEST, ResultSet, result_sets
from grm.benchmarks.run import SequenceRun, parse_ints, parse_shard, require_present, run_benchmark, select
from grm.benchmarks.speed import (
    Timing,
    format_speed_table,
    speed_label,
    speed_report,
    summarize,
    time_clip,
    time_isolated,
    update_results_file,
)
from grm.benchmarks.submission import FORMATS, pack, pack_dataset
from grm.runtime.atomic import atomic_write_text
from grm.runtime.backends import BACKENDS, check_model_file
from grm.runtime.cliapp import DEBUG_ENV, DEBUG_FLAG, one_line, writing
from grm.runtime.datasets import check_threshold
from grm.runtime.errors import GrmError, InputError, Interrupted
from grm.runtime.outputs import check_output
from grm.runtime.progress import wrote

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__)
Dataset_ = Annotated[str, typer.Option("--dataset", help=f"One of: {', '.join(DATASETS)}.")]
DataRoot = Annotated[Path | None, typer.Option("--data-root", help="Dataset root (else $GRM_<DATASET>_ROOT).")]
Backend_ = Annotated[str, typer.Option("--backend", help=f"One of: {', '.join(BACKENDS)}.")]


def user_errors(fn: Callable[..., None]) -> Callable[..., None]:
    """GrmError -> one line on stderr and exit status 2; Ctrl-C -> :class:`Interrupted` for the error boundary.

    The boundary (:func:`grm.runtime.cliapp.run_cli`) does the same for every error; this keeps a command
    called directly (``typer.testing.CliRunner``) to the same one-line contract.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted(
                "every file written so far is complete (files are written whole or not at all); "
                "run the same command again (a run skips the sequences already tracked)"
            ) from None
        except Interrupted:
            raise
        except GrmError as e:
            if DEBUG_FLAG in sys.argv or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise  # the boundary shows the traceback
            typer.echo(f"grm-bench: error: {one_line(str(e))}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _check_run_options(engines: list[str], threshold: float | None, label: str | None) -> None:
    """Checks that need no dataset or opened model, so a bad command line fails at once (before progress bars)."""
    for path in engines:
        check_model_file(path)
    if threshold is not None:
        check_threshold(threshold)
    if label is not None and (not label.strip() or label in (".", "..") or any(c in label for c in "/\\")):
        raise InputError(f"--label {label!r} must be a plain name (it becomes a folder name: no '/', '.' or '..')")


@contextmanager
def _tracking(folder: Path, names: list[str]) -> Iterator[None]:
    """Ctrl-C while tracking: say how many sequences are finished (their files are whole) and how to resume;
    an OSError while writing results (read-only or full file system) names the results folder."""
    try:
        with writing(folder):
            yield
    except KeyboardInterrupt:
        done = sum((folder / f"{name}.txt").is_file() for name in names)
        raise Interrupted(
            f"{done} of {len(names)} sequences are finished in {folder} (each result file is written whole); "
            "run the same command again to resume with the others"
        ) from None


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise InputError(f"--protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")


@app.command("run", help="Run one-pass evaluation, then score it (the default command).")
@user_errors
def run_cmd(
    dataset: Dataset_,
    engine: Annotated[str, typer.Option("--model", "--engine", help="Model file: .onnx, .plan/.engine or checkpoint.")],
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
    batch: Annotated[
        int | None,
        typer.Option(min=1, help="Sequences tracked at once through one batched model (default: the model's batch)."),
    ] = None,
    devices: Annotated[
        str | None, typer.Option(help="CUDA devices to spread the worker processes over, e.g. 0,1,2,3.")
    ] = None,
    shard: Annotated[str, typer.Option(help="Run shard i of n (1-based), e.g. 2/4.")] = "1/1",
    sequence: Annotated[list[str] | None, typer.Option(help="Only this sequence (repeatable).")] = None,
    partial: Annotated[bool, typer.Option(help="Use only the sequences present under the root.")] = False,
    protocol: Annotated[str, typer.Option(help="pytracking or otb.")] = "pytracking",
    analyze_after: Annotated[bool, typer.Option("--analyze/--no-analyze", help="Score when complete.")] = True,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
) -> None:
    _check_protocol(protocol)
    _check_run_options([engine], threshold, label)
    gpus = parse_ints(devices, "--devices") if devices is not None else ()
    ds = open_dataset(dataset, data_root, partial=partial)
    opener = EngineOpener(engine, backend, config, threads)
    name = label or pipeline.run_label(opener.label, threshold)
    folder = pipeline.results_folder(results_dir, name, dataset)
    check_output(folder / MANIFEST, "--results-dir")
    todo = select(ds.sequence_names(), parse_shard(shard), tuple(sequence or ()))
    require_present(ds, todo)
    # disable=None: bars only on a terminal; elsewhere (logs, batch jobs) one plain line per sequence
    with (
        _tracking(folder, todo),
        tqdm(total=len(todo), unit="seq", desc=dataset, disable=None) as seqs,
        tqdm(unit="frame", leave=False, disable=None) as frames,
    ):
        finished = [0]

        def on_sequence(r: SequenceRun) -> None:
            finished[0] += 1
            if seqs.disable:
                state = "already done" if r.skipped else f"{r.frames} frames"
                typer.echo(f"grm-bench: {dataset} {finished[0]}/{len(todo)}: {r.name}: {state}")
            seqs.set_postfix_str(f"{r.name} {'skipped' if r.skipped else f'{r.frames} frames'}")
            seqs.update()

        def on_frame(name: str, i: int, total: int | None) -> None:
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
            batch=batch,
            devices=gpus,
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
        _echo_written(written)


@app.command("analyze", help="Score result folders side by side (folders with the same label are merged).")
@user_errors
def analyze_cmd(
    dataset: Dataset_,
    results: Annotated[list[str], typer.Option("--results", help="Result folder or LABEL=DIR (repeatable).")],
    data_root: DataRoot = None,
    protocol: Annotated[str, typer.Option(help="pytracking or otb.")] = "pytracking",
    out: Annotated[
        Path, typer.Option(help="Report folder (default: the current folder; never a --results folder).")
    ] = Path("."),
    html_out: Annotated[
        Path | None,
        typer.Option("--html", help="Also write one self-contained HTML page (plots, tables, lost frames)."),
    ] = None,
    skip_missing: Annotated[bool, typer.Option(help="Score only sequences every folder has.")] = False,
    partial: Annotated[bool, typer.Option(help="Use only the sequences present under the root.")] = False,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")] = True,
) -> None:
    _check_protocol(protocol)
    ds = open_dataset(dataset, data_root, partial=partial)
    require_present(ds, ds.sequence_names())
    sets = result_sets(results, set(DATASETS))
    _check_not_input(out, sets, "--out")
    if html_out is not None:
        _check_not_input(html_out.parent, sets, "--html")
    with tqdm(total=len(ds.sequence_names()) * len(sets), unit="seq", desc="scoring", leave=False, disable=None) as bar:
        report = analyze(ds, sets, protocol, skip_missing=skip_missing, on_sequence=lambda _: bar.update())
    written = write_report(report, out)
    if plots:
        from grm.benchmarks.plots import write_plots

        written += write_plots(report, out)
    if html_out is not None:
        from grm.benchmarks.html_report import write_html

        written.append(write_html(report, html_out, ds, sets))
    typer.echo(summary_table(report))
    _echo_written(written)
    if html_out is not None:
        typer.echo(f"open {html_out.resolve().as_uri()} in a browser to look at the report")


def _check_not_input(folder: Path, sets: list[ResultSet], option: str) -> None:
    """Reports never go into a --results folder (it may be shared or read-only, and holds only results)."""
    where = folder.resolve()
    for rs in sets:
        for f in rs.folders:
            if f.resolve() == where:
                raise InputError(
                    f"{option} {folder} is the --results folder {f}; reports never go into an input folder, "
                    f"pass {option} with another path"
                )


_KINDS = {".md": "Markdown report", ".json": "JSON report", ".png": "plot", ".html": "HTML report", ".zip": "archive"}


def _written(path: Path) -> str:
    """``wrote PATH (what)``, the kind of output told by its suffix."""
    return wrote(path, _KINDS.get(Path(path).suffix.lower(), "results"))


def _echo_written(paths: list[Path]) -> None:
    for path in paths:
        typer.echo(_written(path))


@app.command("speed", help="Time engines on real frames: fps, latency percentiles, stage split, peak memory.")
@user_errors
def speed_cmd(
    engine: Annotated[list[str], typer.Option("--model", "--engine", help="Model file (repeat to compare models).")],
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
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON to this file ('-': print it, no table).")
    ] = None,
    update_results: Annotated[bool, typer.Option(help="Update the speed section of --results-md.")] = False,
    results_md: Annotated[Path, typer.Option(help="Markdown file for --update-results.")] = Path(
        "benchmarks/RESULTS.md"
    ),
    isolate: Annotated[bool, typer.Option("--isolate/--in-process", help="One fresh process per engine.")] = True,
    batch: Annotated[
        str | None,
        typer.Option(help="Targets per frame to time each engine at, e.g. 1,2,4,8 (default: the model's batch)."),
    ] = None,
    rounds: Annotated[
        int, typer.Option(min=1, help="Time every engine and batch this many times, interleaved; frames pooled.")
    ] = 1,
) -> None:
    _check_run_options(engine, threshold, None)
    batches = parse_ints(batch, "--batch", minimum=1) if batch is not None else (None,)
    clip = pipeline.speed_clip(source, box, dataset, data_root, sequence, frames)
    timer = time_isolated if isolate else time_clip
    configs = [(EngineOpener(path, backend, config, threads), b) for path in engine for b in batches]
    timings: list[list[Timing]] = [[] for _ in configs]
    with tqdm(total=len(configs) * rounds, unit="run", desc="timing", leave=False, disable=None) as bar:
        for _ in range(rounds):  # interleaved: every configuration once per round
            for runs, (opener, size) in zip(timings, configs, strict=True):
                runs.append(timer(opener, clip, warmup=warmup, threshold=threshold, dataset=dataset, batch=size))
                bar.update()
    results = [
        summarize(speed_label(opener.label, runs[0].batch, size is not None), runs)
        for runs, (opener, size) in zip(timings, configs, strict=True)
    ]
    report = speed_report(results, clip, warmup)
    written = []
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(report, indent=1) + "\n")
        if str(json_out) != "-":
            written.append(json_out)
    if update_results:
        written.append(update_results_file(results_md, report))
    if str(json_out) == "-":  # standard output carries the JSON alone
        for path in written:
            typer.echo(_written(path), err=True)
        return
    typer.echo(format_speed_table(report))
    _echo_written(written)


@app.command("pack", help="Build the GOT-10k test or TrackingNet server zip from a results folder.")
@user_errors
def pack_cmd(
    dataset: Annotated[str, typer.Option("--dataset", help=f"One of: {', '.join(FORMATS)}.")],
    results: Annotated[Path, typer.Option("--results", help="Results folder of that dataset.")],
    out: Annotated[Path | None, typer.Option(help="Zip path (default: inside the results folder).")] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            help="Dataset root: its sequences are packed and checked complete "
            "(else $GRM_<DATASET>_ROOT, else the root in the folder's run_manifest.json)."
        ),
    ] = None,
    ignore_extra: Annotated[
        bool, typer.Option("--ignore-extra", help="Skip, with a warning, .txt files that are no sequence's result.")
    ] = False,
) -> None:
    ds = pack_dataset(dataset, results, data_root)
    typer.echo(wrote(pack(dataset, results, out, ds, ignore_extra=ignore_extra), "submission archive"))


def main(argv: list[str] | None = None) -> None:
    """Entry point (``grm-bench``, see :func:`grm.benchmarks.main`)."""
    from grm.benchmarks import main as bench_main

    bench_main(argv)


if __name__ == "__main__":
    main()
