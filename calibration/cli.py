"""grm-calibrate: INT8 Q/DQ model from an FP32 grm export, with its accuracy cost measured on held-out sequences.

Exit status (see :mod:`grm.runtime.cliapp`): 0 done and within --max-auc-drop; 1 INT8 lost more AUC than allowed
(the model is kept as ``<stem>.gate-failed.onnx`` beside its report); 2 user error (one line on stderr);
130 interrupted (the crop cache is kept).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from grm.calibration.pipeline import CalibrateOptions, build_engine, engine_files, run
from grm.calibration.quantize import DEFAULT_EXCLUDE, METHODS, TARGETS, QuantizeOptions
from grm.calibration.report import format_table
from grm.runtime.cliapp import EXIT_GATE, stderr_logging
from grm.runtime.datasets import BENCHMARKS
from grm.runtime.errors import InputError
from grm.runtime.progress import StageBars, next_step, wrote

HELP = (
    "Quantise an FP32 grm ONNX export to INT8 (symmetric Q/DQ, TensorRT-ready) with crops the FP32 tracker cuts "
    "on real sequences, then measure the cost on held-out sequences (decision agreement, IoU with FP32, AUC) and "
    "the speed-up on ONNX Runtime CPU.\n\n"
    "--data: sequence folders (groundtruth_rect.txt or groundtruth.txt + img/), folders of them, or videos with a "
    ".txt box file. Default hold-out: every second sequence in name order.\n\n"
    f"--exclude (repeatable) replaces the default {' '.join(DEFAULT_EXCLUDE)}: groups @predictor @attention "
    "@head @head-last @patch-embed, or shell patterns on node names / op types ('*divide_predict*', Conv); "
    "--exclude none quantises every Conv/MatMul/Gemm.\n\n"
    "--target tensorrt (default) writes the symmetric Q/DQ form TensorRT builds INT8 engines from; --target cpu "
    "writes the form fastest on ONNX Runtime CPU (dynamic u8 x s8 MatMuls, best with AVX-512 VNNI or AMX)."
)
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=HELP, no_args_is_help=True)


@app.command(help=HELP)
def calibrate(
    model: Annotated[Path, typer.Option(help="FP32 .onnx written by grm-export.")],
    data: Annotated[list[Path], typer.Option(help="Sequence folder, folder of sequences or video (repeatable).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="INT8 Q/DQ .onnx to write.")],
    samples: Annotated[
        int, typer.Option(min=1, help="Calibration crops, spread over the calibration sequences.")
    ] = 128,
    target: Annotated[str, typer.Option(help=f"INT8 form: {', '.join(TARGETS)} (see above).")] = "tensorrt",
    method: Annotated[str, typer.Option(help=f"Activation range calibration: {', '.join(METHODS)}.")] = "minmax",
    exclude: Annotated[list[str] | None, typer.Option(help="Nodes kept FP32 (replaces the default list).")] = None,
    max_auc_drop: Annotated[float, typer.Option(help="Fail (exit 1) when INT8 loses more AUC points.")] = 1.0,
    holdout: Annotated[list[str] | None, typer.Option(help="Sequence names to evaluate on, not calibrate on.")] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Division threshold in [0, 1), 0 = argmax rule (default: the --dataset preset)."),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help=f"Take the model's threshold preset for: {', '.join(BENCHMARKS)}.")
    ] = None,
    max_frames: Annotated[
        int | None, typer.Option(min=2, help="Use at most this many frames per sequence for crops.")
    ] = None,
    eval_frames: Annotated[
        int | None, typer.Option(min=2, help="Evaluate on at most this many frames per sequence.")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="Crop cache (default: calibration-cache/ beside --output); the same request reuses it, "
            "and deleting it is safe."
        ),
    ] = None,
    threads: Annotated[int, typer.Option(min=0, help="ONNX Runtime threads (0 = automatic).")] = 0,
    report: Annotated[Path | None, typer.Option(help="Report JSON (default: <output>.report.json).")] = None,
    engine: Annotated[
        bool, typer.Option("--engine", help="Then build a TensorRT engine (<output>.plan, GPU).")
    ] = False,
) -> None:
    options = CalibrateOptions(
        model=model, data=tuple(data), output=output, samples=samples, max_auc_drop=max_auc_drop,
        quantize=QuantizeOptions(target=target, method=method, exclude=_exclusions(exclude)),
        holdout=tuple(holdout or ()), threshold=threshold, dataset=dataset, cache_dir=cache_dir,
        max_frames=max_frames, eval_frames=eval_frames, threads=threads or None, report=report,
    )  # fmt: skip
    if engine and target != "tensorrt":
        raise InputError("--engine builds TensorRT engines from the --target tensorrt form, not --target cpu")
    # stage notes on stdout as each stage starts; bars only on a terminal
    with stderr_logging("grm-calibrate", logging.INFO, notes_to_stdout=True):
        with StageBars() as bars:
            outcome = run(options, bars.advance)
        typer.echo(format_table(outcome.report))
        for path, what in outcome.written():
            typer.echo(wrote(path, what))
        cache = outcome.cache_line()
        if cache is not None:
            typer.echo(cache)
        if not outcome.passed:
            gate = outcome.report["gate"]
            typer.echo(f"grm-calibrate: INT8 AUC drop {gate['auc_drop']:.2f} points exceeds --max-auc-drop "
                       f"{gate['max_auc_drop']:.2f}; kept as {outcome.quantized.output}, see {outcome.report_path}",
                       err=True)  # fmt: skip
            raise typer.Exit(EXIT_GATE)
        plan = build_engine(outcome.quantized.output) if engine else None
    for path, what in engine_files(plan) if plan is not None else []:
        typer.echo(wrote(path, what))
    for command in outcome.next_commands(plan):
        typer.echo(next_step(command))


def _exclusions(patterns: list[str] | None) -> tuple[str, ...]:
    if not patterns:
        return DEFAULT_EXCLUDE
    return tuple(p for p in patterns if p != "none")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (the same as :func:`grm.calibration.main`)."""
    from grm.calibration import main as package_main

    package_main(argv)
