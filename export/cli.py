"""grm-export: turn a GRM checkpoint into a verified static-shape ONNX model (FP32/FP16) or TensorRT engine.

Exit status (see :mod:`grm.runtime.cliapp`): 0 done; 1 parity failed (the model is kept as
``<stem>.parity-failed.onnx`` beside its report); 2 user error (one line: missing weights, unknown config, an
output that cannot be written ...); 130 interrupted (nothing is left at the output path).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from grm.export.download import download
from grm.export.options import DEFAULT_OPSET, parse_batch
from grm.export.weights import RELEASE_ZIP, fill_from_zip, grm_home, store_path
from grm.runtime.backends.trt_build import DEFAULT_WORKSPACE_BYTES, BatchProfile
from grm.runtime.cliapp import EXIT_GATE, one_line, stderr_logging
from grm.runtime.errors import ConfigError, Interrupted, ParityError
from grm.runtime.progress import StageBars, next_step, wrote
from grm.train.config import CONFIGS, get_config

HELP = (
    "Export a GRM tracker as a static-shape ONNX model (or TensorRT engine) and prove it matches PyTorch.\n\n"
    "Weights: --checkpoint PATH, else the local store ($GRM_HOME, default ~/.cache/grm-tracker), which "
    f"'grm-export fetch --from-zip {RELEASE_ZIP}' fills from the official release.\n\n"
    "After every export, ONNX Runtime (CPU) runs the model against PyTorch on real crops at thresholds "
    "0, 0.4, 0.55 and 0.6; the report goes beside the model as <name>.parity.json.\n\n"
    "Examples: 'grm-export --config vitb_256 --fp16', "
    "'grm-export --config tiny --checkpoint GRM_ep0001.pth.tar --output tiny.plan'"
)
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=HELP, no_args_is_help=True)
_MIB = 1 << 20


class _ByteBar:
    """A tqdm byte bar (terminals only) created on the first callback, when the total is known."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            self.bar = tqdm(
                total=total, initial=done, unit="B", unit_scale=True, desc=self.label, leave=False, disable=None
            )
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@app.callback(invoke_without_command=True)
def export(
    ctx: typer.Context,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help=f"Model config: {', '.join(CONFIGS)}.", show_default=False)
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Checkpoint .pth.tar (default: the weights store's file for --config).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Output .onnx (default grm_<config>[_b<N>][_fp16].onnx); .plan/.engine = --engine."
        ),
    ] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 model (LayerNorm, softmax, predictor stay FP32).")] = False,
    engine: Annotated[
        bool, typer.Option("--engine", help="Also build a TensorRT engine (.plan + .plan.json).")
    ] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset, 18..21.")] = DEFAULT_OPSET,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Run the parity check against PyTorch.")] = True,
    workspace: Annotated[
        int, typer.Option(min=1, help="TensorRT builder workspace limit in MiB.")
    ] = DEFAULT_WORKSPACE_BYTES // _MIB,
    with_decisions: Annotated[
        bool, typer.Option("--with-decisions", help="Add the per-block division masks as output 'decisions'.")
    ] = False,
    attention: Annotated[
        str,
        typer.Option(
            help="Masked attention: 'exact' reproduces the official eps-softmax; 'fast' drops its eps term "
            "(cheaper; differs only where a blocked key dominates a row).",
        ),
    ] = "exact",
    parity_data: Annotated[
        Path | None,
        typer.Option(
            envvar="GRM_PARITY_DATA", help="Folder of OTB-layout sequences for parity crops (else synthetic)."
        ),
    ] = None,
    timing_cache: Annotated[Path | None, typer.Option(help="TensorRT timing cache file (read, then updated).")] = None,
    threads: Annotated[int, typer.Option(min=0, help="ONNX Runtime threads for parity (0 = automatic).")] = 0,
    batch: Annotated[
        str,
        typer.Option(
            help="Template/search pairs per model call: N (every input and output leads with N), or 'dynamic' "
            "(any number; a TensorRT engine takes --batch-min..--batch-max).",
        ),
    ] = "1",
    batch_min: Annotated[
        int | None, typer.Option(min=1, help="Dynamic batch: smallest TensorRT batch (default 1).", show_default=False)
    ] = None,
    batch_opt: Annotated[
        int | None,
        typer.Option(min=1, help="Dynamic batch: batch TensorRT tunes for (default 4).", show_default=False),
    ] = None,
    batch_max: Annotated[
        int | None, typer.Option(min=1, help="Dynamic batch: largest TensorRT batch (default 16).", show_default=False)
    ] = None,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    logging.getLogger("torch").setLevel(logging.ERROR)  # exporter chatter (e.g. missing torchvision ops)
    if config is None:
        raise ConfigError(f"--config is required; one of {', '.join(CONFIGS)}")
    typer.echo("grm-export: loading PyTorch and the ONNX exporter")
    from grm.export.pipeline import ExportOptions, run_export  # the slow import, after the line above

    options = ExportOptions(
        config=config, checkpoint=checkpoint, output=output, fp16=fp16, engine=engine, opset=opset, verify=verify,
        workspace_bytes=workspace * _MIB, with_decisions=with_decisions, attention=attention,
        parity_data=parity_data,
        timing_cache=timing_cache, threads=threads,
        batch=parse_batch(batch), batch_profile=batch_profile(batch_min, batch_opt, batch_max),
    )  # fmt: skip
    try:  # stage notes on stdout as each stage starts; bars only on a terminal
        with stderr_logging("grm-export", logging.INFO, notes_to_stdout=True), StageBars() as bars:
            result = run_export(options, bars.reach)
    except ParityError as e:  # a failed gate, not bad input: exit 1
        typer.echo(f"grm-export: error: {one_line(str(e))}", err=True)
        raise typer.Exit(EXIT_GATE) from e
    for report in (result.report, result.engine_report):
        if report is not None:
            typer.echo("\n".join(report.summary_lines()))
    for path, what in result.written():
        typer.echo(wrote(path, what))
    typer.echo(next_step(result.next_command()))


@app.command(help=f"Fill the weights store from the official {RELEASE_ZIP} or by downloading it (resumable).")
def fetch(
    from_zip: Annotated[Path | None, typer.Option(help=f"Path to the official {RELEASE_ZIP}.")] = None,
    url: Annotated[str | None, typer.Option(help="Download URL of the release zip or of one checkpoint.")] = None,
    config: Annotated[
        list[str] | None,
        typer.Option("--config", "-c", help="Only these configs (required for a single checkpoint URL)."),
    ] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected SHA-256 of the downloaded file.")] = None,
) -> None:
    bars = [_ByteBar("download"), _ByteBar("extract")]
    try:
        stored = _fetch(from_zip, url, config, sha256, *bars)
    except KeyboardInterrupt as e:
        kept = "the downloaded part is kept and the same command resumes it" if url else "nothing was stored"
        raise Interrupted(f"{kept}; run the same command again") from e
    finally:
        for bar in bars:
            bar.close()
    for name, path in stored.items():
        typer.echo(f"{name}: {path}")


def _fetch(
    from_zip: Path | None,
    url: str | None,
    configs: list[str] | None,
    sha256: str | None,
    download_bar: _ByteBar,
    extract_bar: _ByteBar,
) -> dict[str, Path]:
    if from_zip is not None and url is None:
        return fill_from_zip(from_zip, configs or None, progress=extract_bar)
    if url is None or from_zip is not None:
        raise ConfigError("give exactly one of --from-zip PATH or --url URL")
    if url.split("?", 1)[0].endswith(".zip"):
        archive = download(url, grm_home() / "downloads" / RELEASE_ZIP, sha256, progress=download_bar)
        return fill_from_zip(archive, configs or None, progress=extract_bar)
    if not configs or len(configs) != 1:
        raise ConfigError("a single-checkpoint --url needs exactly one --config saying which model it is")
    name = get_config(configs[0]).name
    return {name: download(url, store_path(name), sha256, progress=download_bar)}


def batch_profile(smallest: int | None, tuned: int | None, largest: int | None) -> BatchProfile | None:
    """The TensorRT profile from ``--batch-min/--batch-opt/--batch-max``; None when none is given. Missing ones
    take :class:`BatchProfile`'s defaults, moved inside the range the given ones set."""
    if smallest is None and tuned is None and largest is None:
        return None
    default = BatchProfile()
    low = smallest or default.min
    high = largest or max(default.max, low, tuned or 0)
    return BatchProfile(low, tuned or min(max(default.opt, low), high), high)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (the same as :func:`grm.export.main`)."""
    from grm.export import main as package_main

    package_main(argv)
