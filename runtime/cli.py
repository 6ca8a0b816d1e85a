"""grm-run: track one target in a video, a folder of frames, a camera or a stream. Never imports torch.

Exit status: 0 done, 2 bad input (one line on stderr), 130 interrupted (outputs written so far are kept).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from grm.runtime.atomic import STDOUT, is_stream, writes_to_stdout
from grm.runtime.backends import BACKENDS, open_model
from grm.runtime.datasets import check_threshold_options, resolve_threshold
from grm.runtime.demo import DemoSource, demo_init_box, demo_model, is_demo
from grm.runtime.errors import InputError, Interrupted
from grm.runtime.outputs import check_output, require_display, video_suffix_ok, video_suffixes
from grm.runtime.session import FrameRecord, RunOptions, TrackingSession, parse_box
from grm.runtime.sources import open_source
from grm.runtime.stats import format_summary


def _process_start() -> float:
    """``time.perf_counter()`` value of this process's start (Linux /proc; elsewhere this module's import)."""
    now = time.perf_counter()
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return now - max(uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return now


PROCESS_START = _process_start()
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(
    help="Track the target given by --box through SOURCE: a video file, a frame folder, a camera index, a stream URL, "
    "or 'demo' (a generated clip; with the bundled demo model when this build ships one)."
)
def run(
    source: Annotated[
        str, typer.Argument(help="Video file, folder of frames (natural name order), camera index or URL.")
    ],
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", envvar="GRM_MODEL", help=".onnx, .plan/.engine or checkpoint (required)."),
    ] = None,
    box: Annotated[str | None, typer.Option(help="Initial box x,y,w,h in first-frame pixels; omit to draw it.")] = None,
    backend: Annotated[str, typer.Option(help=f"One of: {', '.join(BACKENDS)}.")] = "auto",
    config: Annotated[str | None, typer.Option(help="Config name; needed for raw checkpoints, else checked.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Division threshold in [0, 1); 0 = argmax rule.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Use the model's threshold preset for this dataset.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU inference threads (default: library's).")] = None,
    boxes_out: Annotated[Path | None, typer.Option(help="Write x,y,w,h per input frame (first = init box).")] = None,
    with_score: Annotated[bool, typer.Option("--with-score", help="Add the score column to --boxes-out.")] = False,
    video_out: Annotated[Path | None, typer.Option(help="Write an annotated video (.mp4 or .avi).")] = None,
    show: Annotated[bool, typer.Option("--show", help="Show the annotated frames in a window (q/Esc stops).")] = False,
    json_out: Annotated[Path | None, typer.Option(help="Write the run summary as JSON.")] = None,
    lost_threshold: Annotated[
        float | None, typer.Option(help="Mark frames whose score is below this as lost (boxes unchanged).")
    ] = None,
    max_frames: Annotated[int | None, typer.Option(min=1, help="Stop after this many input frames.")] = None,
    masks: Annotated[
        bool, typer.Option("--masks/--no-masks", help="Overlay division masks if the model has them.")
    ] = True,
) -> None:
    options = RunOptions(
        lost_threshold=lost_threshold,
        max_frames=max_frames,
        boxes_out=boxes_out,
        with_score=with_score,
        video_out=video_out,
        show=show,
        json_out=json_out,
        overlay_masks=masks,
    )
    with _log_to_stderr():
        check_threshold_options(threshold, dataset)
        options = replace(options, box_xywh=_initial_box(source, box))
        _check_options(options, source, model)
        summary, session = _track(source, model, backend, config, threads, threshold, dataset, options)
    # standard output carries the boxes or the JSON alone when one of them goes there
    to_stdout = any(p is not None and writes_to_stdout(p) for p in (options.boxes_out, options.json_out))
    typer.echo(format_summary(summary), err=to_stdout)
    if session.result.interrupted:
        raise Interrupted(_interrupted_note(session))


@contextmanager
def _log_to_stderr() -> Iterator[None]:
    """Route grm's warnings (skipped frames, fallbacks) to this invocation's stderr, above the progress bar."""
    logger = logging.getLogger("grm")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("grm-run: %(levelname)s: %(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        with logging_redirect_tqdm(loggers=[logger]):
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _initial_box(source: str, box: str | None) -> tuple[float, float, float, float] | None:
    if box is not None:
        return parse_box(box)
    return demo_init_box() if is_demo(source) else None


def _interrupted_note(session: TrackingSession) -> str:
    """What a Ctrl-C kept and how to go on (tracking cannot resume mid-source: the tracker state is not saved)."""
    count = len(session.result.records)
    done = f"stopped after {count} frame{'s' if count != 1 else ''}"
    if not session.kept:
        return f"{done}; no output file was asked for; run the command again (--boxes-out FILE keeps the boxes)"
    return f"{done}; kept {', '.join(session.kept)}; run the same command again to track the whole source"


def _check_options(options: RunOptions, source: str, model: Path | None) -> None:
    """Option checks that need no model or frame, so that a bad command line fails before any work."""
    if options.lost_threshold is not None and not (0.0 <= options.lost_threshold <= 1.0):
        raise InputError(f"--lost-threshold {options.lost_threshold} must lie in [0, 1]")
    _check_outputs(options, [Path(p) for p in (source, model) if p is not None and Path(p).is_file()])
    if options.box_xywh is None:
        require_display("drawing the initial box (no --box given)")
    if options.show:
        require_display("--show")


def _check_outputs(options: RunOptions, inputs: list[Path]) -> None:
    outputs = {"--boxes-out": options.boxes_out, "--video-out": options.video_out, "--json-out": options.json_out}
    given = {option: path for option, path in outputs.items() if path is not None}
    if sum(str(path) == STDOUT for path in given.values()) > 1:
        raise InputError("only one of --boxes-out and --json-out can be '-' (standard output)")
    video = options.video_out
    if video is not None and (is_stream(video) or not video_suffix_ok(video)):
        raise InputError(f"--video-out {video}: give a file name ending in one of {video_suffixes()}")
    seen: dict[Path, str] = {}
    for option, path in given.items():
        if is_stream(path):
            continue
        check_output(path, option)
        where = path.resolve()
        if any(where == i.resolve() for i in inputs):
            raise InputError(f"{option} {path} is an input of this run; writing it would destroy it")
        if where in seen:
            raise InputError(f"{seen[where]} and {option} name the same file {path}")
        seen[where] = option


def _track(
    source: str,
    model: Path | None,
    backend: str,
    config: str | None,
    threads: int | None,
    threshold: float | None,
    dataset: str | None,
    options: RunOptions,
) -> tuple[dict[str, Any], TrackingSession]:
    if model is None and not is_demo(source):
        raise InputError("--model is required: a grm .onnx export, a TensorRT .plan or a checkpoint")
    frames = DemoSource() if is_demo(source) else open_source(source)
    try:
        net = open_model(model or demo_model(), backend=backend, config=config, threads=threads)
        try:
            chosen = resolve_threshold(net.metadata.tracker, threshold, dataset)
            options = replace(options, threshold=chosen)
            session = TrackingSession(net, frames, options, started_at=PROCESS_START, source_fps=frames.info.fps)
            total = frames.info.frame_count
            total = min(total, options.max_frames) if total and options.max_frames else total or options.max_frames
            # disable=None: the bar is drawn only when stderr is a terminal
            with tqdm(total=total, unit="frame", desc=net.name, dynamic_ncols=True, disable=None) as bar:

                def progress(record: FrameRecord, fps: float) -> None:
                    bar.update(1)
                    bar.set_postfix(fps=f"{fps:.1f}", score=f"{record.score:.2f}", refresh=False)

                session.on_frame = progress
                session.run()
            return session.summary(), session
        finally:
            net.close()
    finally:
        frames.close()


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``grm-run``): the command inside the shared error boundary (:mod:`grm.runtime.cliapp`)."""
    from grm.runtime import main as run_main

    run_main(argv)


if __name__ == "__main__":
    main()
