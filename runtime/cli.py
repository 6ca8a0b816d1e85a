"""grm-run: track one target, or several, in a video, a folder of frames, a camera or a stream. Never imports torch.

Exit status: 0 done, 2 bad input (one line on stderr), 130 interrupted (outputs written so far are kept).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from grm.runtime.atomic import STDOUT, is_stream, writes_to_stdout
from grm.runtime.backends import BACKENDS, open_model
from grm.runtime.cliapp import stderr_logging
from grm.runtime.datasets import check_threshold_options, resolve_threshold
from grm.runtime.demo import DEMO_NOTICE, DemoSource, demo_init_box, demo_model, is_demo
from grm.runtime.errors import InputError, Interrupted
from grm.runtime.outputs import check_output, require_display, video_suffix_ok, video_suffixes
from grm.runtime.progress import next_step, shell_word, wrote
from grm.runtime.session import Box, Record, RunOptions, TrackingSession, parse_box
from grm.runtime.sources import open_source
from grm.runtime.stats import format_summary

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
_ENTRY: list[float] = []  # time.perf_counter() at the console command's entry, left by mark_entry


def mark_entry(at: float) -> None:
    """Record when the ``grm-run`` command started (``time.perf_counter()``): the time to first frame counts from
    there (:data:`grm.runtime.stats.TIME_TO_FIRST_FRAME_DEFINITION`)."""
    _ENTRY[:] = [at]


def _take_entry() -> float:
    """The recorded entry time, once; when the app is called directly (no console entry), now."""
    return _ENTRY.pop() if _ENTRY else time.perf_counter()


@app.command(
    help="Track the target given by --box through SOURCE (repeat --box for several targets): a video file, a frame "
    "folder, a camera index, a stream URL, or 'demo' (a generated clip). Without --model the bundled demo model runs."
)
def run(
    source: Annotated[
        str, typer.Argument(help="Video file, folder of frames (natural name order), camera index or URL.")
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", "-m", envvar="GRM_MODEL", help=".onnx, .plan/.engine or checkpoint (default: the demo model)."
        ),
    ] = None,
    box: Annotated[
        list[str] | None,
        typer.Option(
            metavar="X,Y,W,H",
            help="Initial box x,y,w,h in first-frame pixels; repeat for several targets (ids 1, 2, ... in this "
            "order); omit to draw it (several with --show).",
        ),
    ] = None,
    backend: Annotated[str, typer.Option(help=f"One of: {', '.join(BACKENDS)}.")] = "auto",
    config: Annotated[str | None, typer.Option(help="Config name; needed for raw checkpoints, else checked.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Division threshold in [0, 1); 0 = argmax rule.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Use the model's threshold preset for this dataset.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU inference threads (default: library's).")] = None,
    boxes_out: Annotated[
        Path | None,
        typer.Option(
            help="Write x,y,w,h per input frame (first = init box); several targets: MOTChallenge lines "
            "frame,id,x,y,w,h,score,-1,-1,-1."
        ),
    ] = None,
    with_score: Annotated[
        bool, typer.Option("--with-score", help="Add the score column to --boxes-out (MOT lines always have it).")
    ] = False,
    video_out: Annotated[Path | None, typer.Option(help="Write an annotated video (.mp4 or .avi).")] = None,
    show: Annotated[
        bool,
        typer.Option(
            "--show",
            help="Show the annotated frames in a window (q/Esc stops); without --box, draw "
            "one or several boxes on the first frame.",
        ),
    ] = False,
    json_out: Annotated[Path | None, typer.Option(help="Write the run summary as JSON.")] = None,
    lost_threshold: Annotated[
        float | None, typer.Option(help="Mark frames whose score is below this as lost (boxes unchanged; per target).")
    ] = None,
    max_frames: Annotated[int | None, typer.Option(min=1, help="Stop after this many input frames.")] = None,
    masks: Annotated[
        bool, typer.Option("--masks/--no-masks", help="Overlay division masks if the model has them.")
    ] = True,
) -> None:
    started = _take_entry()
    options = RunOptions(
        draw_several=show,
        lost_threshold=lost_threshold,
        max_frames=max_frames,
        boxes_out=boxes_out,
        with_score=with_score,
        video_out=video_out,
        show=show,
        json_out=json_out,
        overlay_masks=masks,
    )
    with stderr_logging("grm-run"):  # warnings (skipped frames, fallbacks) above the progress bar
        demo = is_demo(source)
        check_threshold_options(threshold, dataset)
        options = replace(options, boxes=_initial_boxes(demo, box or []))
        _check_options(options, source, model)
        demo_used = model is None
        if model is None:
            model = demo_model()  # an InputError saying what to pass when this build ships none
            if not demo:
                typer.echo(f"grm-run: note: {DEMO_NOTICE}", err=True)
        summary, session = _track(source, demo, model, backend, config, threads, threshold, dataset, options, started)
    # standard output carries the boxes or the JSON alone when one of them goes there
    to_stdout = any(p is not None and writes_to_stdout(p) for p in (options.boxes_out, options.json_out))
    typer.echo(format_summary(summary), err=to_stdout)
    if session.result.interrupted:
        raise Interrupted(_interrupted_note(session))
    for path, holds in session.written:
        if not writes_to_stdout(path):
            typer.echo(wrote(path, holds), err=to_stdout)
    typer.echo(next_step(_next_command(demo, demo_used, options, model)), err=to_stdout)


def _next_command(demo: bool, demo_model_used: bool, options: RunOptions, model: Path) -> str:
    """The command a user would most likely run after this one."""
    if demo:
        return "track your own video: grm-run VIDEO --box x,y,w,h --video-out tracked.mp4 (or --show to draw the box)"
    if demo_model_used:
        return (
            "for real video, get the official GRM weights: grm-export fetch --from-zip Trained_Models.zip, then "
            "grm-export --config vitb_256, then pass grm_vitb_256.onnx as --model"
        )
    if options.video_out is None and not options.show:
        return "see the boxes drawn: run the same command with --video-out tracked.mp4 (or --show)"
    return f"score this model on a benchmark: grm-bench --dataset otb --model {shell_word(model)} --data-root OTB_DIR"


def _initial_boxes(demo: bool, texts: list[str]) -> tuple[Box, ...]:
    """The --box values (xywh pixels), or the demo clip's first box; none = the user draws them."""
    if texts:
        return tuple(parse_box(text) for text in texts)
    return (demo_init_box(),) if demo else ()


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
    if not options.boxes:
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
    demo: bool,
    model: Path,
    backend: str,
    config: str | None,
    threads: int | None,
    threshold: float | None,
    dataset: str | None,
    options: RunOptions,
    started: float,
) -> tuple[dict[str, Any], TrackingSession]:
    frames = DemoSource() if demo else open_source(source)
    try:
        net = open_model(model, backend=backend, config=config, threads=threads)
        try:
            chosen = resolve_threshold(net.metadata.tracker, threshold, dataset)
            options = replace(options, threshold=chosen)
            session = TrackingSession(net, frames, options, started_at=started, source_fps=frames.info.fps)
            total = frames.info.frame_count
            total = min(total, options.max_frames) if total and options.max_frames else total or options.max_frames
            # disable=None: the bar is drawn only when stderr is a terminal
            with tqdm(total=total, unit="frame", desc=net.name, dynamic_ncols=True, disable=None) as bar:

                def progress(record: Record, fps: float) -> None:
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
