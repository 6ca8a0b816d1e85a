"""One tracking run: read frames, track, draw, and write every output, also after an early end or Ctrl-C.

The boxes file keeps one line per input frame (see :mod:`grm.runtime.outputs` for its format and what a
skipped frame holds). ``--lost-threshold`` only *marks* frames whose score is below it (JSON summary,
red box in the video); it never changes a box.

Several initial boxes are tracked together through :class:`~grm.runtime.multi.MultiTracker` (one batched network
call per frame where the model allows it); each target then gets the boxes it would get alone, the boxes file holds
MOTChallenge lines and the summary counts lost frames per target. One box runs the single-target
:class:`~grm.runtime.tracker.Tracker`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.runtime.annotate import GREEN, RED, WHITE, draw_box, draw_status, draw_target, overlay_decisions
from grm.runtime.atomic import STDOUT
from grm.runtime.backends.base import Backend
from grm.runtime.errors import GrmError, InputError, OutputError
from grm.runtime.geometry import validate_init_box
from grm.runtime.multi import MultiTracker
from grm.runtime.outputs import VideoSink, WindowSink, select_box, select_boxes, write_boxes, write_json, write_mot
from grm.runtime.sources import FrameSource
from grm.runtime.stats import FPS_DEFINITION, TIME_TO_FIRST_FRAME_DEFINITION, latency_ms
from grm.runtime.tracker import StageTimes, Tracker, TrackResult

log = logging.getLogger(__name__)
Box = tuple[float, float, float, float]


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """What to track and where the results go (paths None = output not wanted).

    ``boxes``: the initial boxes (xywh pixels), one per target; none = the user draws them on the first frame,
    one box, or several when ``draw_several``.
    """

    boxes: Sequence[Sequence[float]] = ()
    draw_several: bool = False
    threshold: float = 0.0
    lost_threshold: float | None = None
    max_frames: int | None = None
    boxes_out: Path | None = None
    with_score: bool = False
    video_out: Path | None = None
    show: bool = False
    json_out: Path | None = None
    overlay_masks: bool = True


@dataclass(frozen=True)
class FrameRecord:
    """One input frame's result; ``status`` is ``init``, ``tracked`` or ``skipped``."""

    index: int
    box_xywh: Box
    score: float
    status: str
    lost: bool = False
    times: StageTimes | None = None


@dataclass(frozen=True)
class TargetsRecord:
    """One input frame's result for several targets: a :class:`FrameRecord` per target id (this frame's index and
    status); ``times`` are the whole frame's stages (all targets' crops, network calls and decoding)."""

    index: int
    status: str
    targets: dict[int, FrameRecord]
    times: StageTimes | None = None

    @property
    def score(self) -> float:
        """The lowest target score (NaN on a skipped frame)."""
        scores = [r.score for r in self.targets.values() if not math.isnan(r.score)]
        return min(scores) if scores else math.nan

    @property
    def lost(self) -> int:
        """How many targets are marked lost on this frame."""
        return sum(r.lost for r in self.targets.values())


Record = FrameRecord | TargetsRecord


@dataclass
class RunResult:
    """Everything a run produced, for the summary and ``--json-out``."""

    records: list[Record] = field(default_factory=list)
    wall_time_s: float = 0.0
    time_to_first_frame_s: float | None = None
    interrupted: bool = False
    stopped_by_user: bool = False
    ended_early: bool = False
    error: str | None = None

    @property
    def fps(self) -> float:
        return len(self.records) / self.wall_time_s if self.wall_time_s > 0 else math.nan

    def to_dict(self, **context: Any) -> dict[str, Any]:
        """The summary: frame counts, speed, and the target's boxes and lost frames (``targets``, by id, for
        several targets)."""
        tracked = [r for r in self.records if r.status == "tracked"]
        summary = {
            **context,
            "frames": len(self.records),
            "tracked": len(tracked),
            "skipped_frames": [r.index for r in self.records if r.status == "skipped"],
            "wall_time_s": self.wall_time_s,
            "fps": self.fps,
            "fps_definition": FPS_DEFINITION,
            "time_to_first_frame_s": self.time_to_first_frame_s,
            "time_to_first_frame_definition": TIME_TO_FIRST_FRAME_DEFINITION,
            "latency_ms": latency_ms([r.times for r in tracked if r.times is not None]),
            "interrupted": self.interrupted,
            "stopped_by_user": self.stopped_by_user,
            "ended_early": self.ended_early,
            "error": self.error,
        }
        several = [r for r in self.records if isinstance(r, TargetsRecord)]
        if several:
            by_id = {i: [r.targets[i] for r in several] for i in several[0].targets}
            targets = {i: target_summary(records) for i, records in by_id.items()}
            summary["targets"] = {str(i): {**t, "lost": len(t["lost_frames"])} for i, t in targets.items()}
        else:
            summary.update(target_summary([r for r in self.records if isinstance(r, FrameRecord)]))
        return summary


def target_summary(records: Sequence[FrameRecord]) -> dict[str, Any]:
    """One target's part of the summary: the frames marked lost, and its first and last box (xywh pixels)."""
    return {
        "lost_frames": [r.index for r in records if r.lost],
        "init_box": list(records[0].box_xywh) if records else None,
        "last_box": list(records[-1].box_xywh) if records else None,
    }


def _where(path: Path) -> str:
    return "on standard output" if str(path) == STDOUT else f"in {path}"


def parse_box(text: str) -> Box:
    """``"x,y,w,h"`` (pixels, top-left corner) -> floats; anything else is an InputError."""
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError as e:
        raise InputError(f"--box {text!r} is not four numbers x,y,w,h") from e
    if len(values) != 4:
        raise InputError(f"--box {text!r} has {len(values)} values; give four numbers x,y,w,h")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"--box {text!r} contains NaN or infinity")
    return values


class TrackingSession:
    """Runs a :class:`Tracker` (one initial box) or a :class:`MultiTracker` (several) over a frame source and
    feeds the outputs.

    Args:
        backend: an opened model.
        source: frames (BGR).
        options: what to track and what to write.
        on_frame: called after every frame with the record and the running fps (progress bars).
        started_at: ``time.perf_counter()`` value of the command's start, to measure the time to the first tracked
            frame (:data:`grm.runtime.stats.TIME_TO_FIRST_FRAME_DEFINITION`).
        source_fps: frame rate for ``--video-out`` (the source's when known).
    """

    def __init__(
        self,
        backend: Backend,
        source: FrameSource,
        options: RunOptions,
        *,
        on_frame: Callable[[Record, float], None] | None = None,
        started_at: float | None = None,
        source_fps: float | None = None,
    ) -> None:
        self.backend = backend
        self.source = source
        self.options = options
        self.tracker = Tracker(backend, threshold=options.threshold)
        self.several: MultiTracker | None = None  # set when the first frame starts more than one target
        self.on_frame = on_frame
        self.started_at = started_at
        self.result = RunResult()
        self.kept: list[str] = []  # what _finish wrote, for the closing message ("boxes of 12 frames in b.txt")
        self.written: list[tuple[Path, str]] = []  # (path, what it holds) of those outputs, for "wrote" lines
        self._video = VideoSink(options.video_out, source_fps) if options.video_out else None
        self._window = WindowSink() if options.show else None
        self._t0 = 0.0
        self._prev_box: Box | None = None
        self._decisions: NDArray[np.int8] | None = None
        self._prev_boxes: dict[int, Box] = {}  # several targets: each one's box before this frame
        self._all_decisions: dict[int, NDArray[np.int8] | None] = {}

    def run(self) -> RunResult:
        """Track every frame; outputs are written even when the run ends early, fails or is interrupted."""
        self._t0 = time.perf_counter()
        failure: GrmError | None = None
        try:
            self._loop()
        except KeyboardInterrupt:
            self.result.interrupted = True
            log.info("interrupted after %d frames; writing outputs", len(self.result.records))
        except GrmError as e:
            self.result.error = str(e)
            failure = e
        finally:
            self.result.wall_time_s = time.perf_counter() - self._t0
            self.result.ended_early = bool(getattr(self.source, "ended_early", False))
            output_error = self._finish()
        if failure is None and output_error is not None:
            failure = output_error
        if isinstance(failure, OutputError) and self.kept:
            raise OutputError(f"{failure}; kept {', '.join(self.kept)}") from None
        if failure is not None:
            raise failure
        return self.result

    def _loop(self) -> None:
        limit = self.options.max_frames
        for index, frame in self.source:
            record = self._step(index, frame)
            self.result.records.append(record)
            keep_going = self._emit(frame, record)
            if self.on_frame is not None:
                self.on_frame(record, len(self.result.records) / max(time.perf_counter() - self._t0, 1e-9))
            if not keep_going:
                self.result.stopped_by_user = True
                break
            if limit is not None and len(self.result.records) >= limit:
                break
        if not self.result.records:
            raise InputError(f"{self.source.info.description} yielded no frames")

    def _step(self, index: int, frame: NDArray[np.uint8] | None) -> Record:
        started = self.several is not None or self.tracker.state is not None
        if frame is None:
            name = getattr(self.source, "frame_name", None)
            label = f"frame {index} ({name(index)})" if name is not None else f"frame {index}"
            if not started:
                raise InputError(f"{label} cannot be decoded; the first frame must be readable to initialise")
            log.warning("%s cannot be decoded; skipped (previous box repeated, score nan)", label)
            return self._skipped(index)
        if not started:
            return self._initialize(index, frame)
        return self._track(index, frame) if self.several is None else self._track_several(index, frame)

    def _skipped(self, index: int) -> Record:
        """A frame that cannot be decoded: every target keeps its box (its state), score NaN."""
        if self.several is not None:
            targets = {
                i: FrameRecord(index=index, box_xywh=box, score=math.nan, status="skipped")
                for i, box in self.several.states.items()
            }
            return TargetsRecord(index=index, status="skipped", targets=targets)
        assert self.tracker.state is not None, "a skipped frame follows the first one"
        return FrameRecord(index=index, box_xywh=self.tracker.state, score=math.nan, status="skipped")

    def _initialize(self, index: int, frame: NDArray[np.uint8]) -> Record:
        boxes = self._initial_boxes(frame)
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if len(boxes) > 1:
            return self._initialize_several(index, rgb, boxes)
        self.tracker.initialize(rgb, boxes[0])
        state = self.tracker.state
        assert state is not None, "initialize sets the tracker state"
        self._prev_box = state
        return FrameRecord(index=index, box_xywh=state, score=1.0, status="init")

    def _initial_boxes(self, frame: NDArray[np.uint8]) -> list[Sequence[float]]:
        if self.options.boxes:
            return list(self.options.boxes)
        return list(select_boxes(frame)) if self.options.draw_several else [select_box(frame)]

    def _initialize_several(self, index: int, rgb: NDArray[np.uint8], boxes: list[Sequence[float]]) -> Record:
        """Start one target per box (ids 1..K in order); a bad box is named by its place (``--box 2 of 3``)."""
        what = "--box" if self.options.boxes else "drawn box"
        height, width = rgb.shape[:2]
        for k, box in enumerate(boxes, start=1):
            try:
                validate_init_box(box, height, width)
            except InputError as e:
                raise InputError(f"{what} {k} of {len(boxes)}: {e}") from None
        several = MultiTracker(self.backend, self.tracker.params, threshold=self.options.threshold)
        several.initialize(rgb, boxes)
        self.several = several
        self._prev_boxes = several.states
        targets = {
            i: FrameRecord(index=index, box_xywh=box, score=1.0, status="init") for i, box in several.states.items()
        }
        return TargetsRecord(index=index, status="init", targets=targets)

    def _track(self, index: int, frame: NDArray[np.uint8]) -> FrameRecord:
        self._prev_box = self.tracker.state
        t0 = time.perf_counter()
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        convert = time.perf_counter() - t0
        res = self.tracker.track(rgb)
        self._first_frame_tracked()
        self._decisions = res.decisions
        times = replace(res.times, preprocess=res.times.preprocess + convert)
        return self._tracked(index, res, times)

    def _track_several(self, index: int, frame: NDArray[np.uint8]) -> TargetsRecord:
        several = self.several
        assert several is not None, "called once several targets are tracked"
        self._prev_boxes = several.states
        t0 = time.perf_counter()
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        convert = time.perf_counter() - t0
        results = several.track(rgb)
        self._first_frame_tracked()
        self._all_decisions = {i: r.decisions for i, r in results.items()}
        frame_times = next(iter(results.values())).times  # every result carries the whole frame's stages
        times = replace(frame_times, preprocess=frame_times.preprocess + convert)
        targets = {i: self._tracked(index, r, times) for i, r in results.items()}
        return TargetsRecord(index=index, status="tracked", targets=targets, times=times)

    def _tracked(self, index: int, res: TrackResult, times: StageTimes) -> FrameRecord:
        lost = self.options.lost_threshold is not None and res.score < self.options.lost_threshold
        return FrameRecord(
            index=index, box_xywh=res.box_xywh, score=res.score, status="tracked", lost=lost, times=times
        )

    def _first_frame_tracked(self) -> None:
        if self.result.time_to_first_frame_s is None and self.started_at is not None:
            self.result.time_to_first_frame_s = time.perf_counter() - self.started_at

    def _emit(self, frame: NDArray[np.uint8] | None, record: Record) -> bool:
        """Draw and show/write the frame; False when the user closed the window."""
        if frame is None or (self._video is None and self._window is None):
            return True
        self._annotate(frame, record)
        if self._video is not None:
            self._video.write(frame)
        return self._window.show(frame) if self._window is not None else True

    def _annotate(self, frame: NDArray[np.uint8], record: Record) -> None:
        if isinstance(record, TargetsRecord):
            self._annotate_several(frame, record)
            return
        decisions = self._decisions if record.status == "tracked" else None
        params = self.tracker.params
        if decisions is not None and self._prev_box is not None and self.options.overlay_masks:
            overlay_decisions(frame, decisions, self._prev_box, params.search_factor, params.feat_size)
        draw_box(frame, record.box_xywh, RED if record.lost else GREEN)
        text = f"#{record.index}  score {record.score:.2f}  {self._fps_now():.1f} fps"
        draw_status(frame, text + ("  LOST" if record.lost else ""), RED if record.lost else WHITE)

    def _annotate_several(self, frame: NDArray[np.uint8], record: TargetsRecord) -> None:
        """Each target in its own colour with its id; the masks of every target's search region under them."""
        params = self.tracker.params
        if record.status == "tracked" and self.options.overlay_masks:
            for i, decisions in self._all_decisions.items():
                if decisions is not None and i in self._prev_boxes:
                    overlay_decisions(frame, decisions, self._prev_boxes[i], params.search_factor, params.feat_size)
        for i, target in record.targets.items():
            draw_target(frame, target.box_xywh, i, target.lost)
        text = f"#{record.index}  {len(record.targets)} targets  {self._fps_now():.1f} fps"
        draw_status(frame, text + (f"  {record.lost} LOST" if record.lost else ""), RED if record.lost else WHITE)

    def _fps_now(self) -> float:
        """Frames handled so far per second of the frame loop (the status line's figure)."""
        return len(self.result.records) / max(time.perf_counter() - self._t0, 1e-9)

    def _finish(self) -> OutputError | None:
        """Close the window and the video, then write the boxes file and the JSON summary.

        Every output is attempted even when one fails (a failed video still leaves the boxes); :attr:`kept`
        names what was written and the first failure is returned.
        """
        if self._window is not None:
            self._window.close()
        failures: list[OutputError] = []
        video = self._video
        if video is not None:
            self._attempt(failures, video.close, f"the annotated video {video.path}", (video.path, "annotated video"))
        records = self.result.records
        boxes_out = self.options.boxes_out
        if boxes_out is not None and records:
            frames = f"{len(records)} frame{'s' if len(records) != 1 else ''}"
            holds = "boxes"
            if self.several is not None:
                frames = f"{len(self.several.ids)} targets over {frames}"
                holds = f"boxes of {len(self.several.ids)} targets, MOTChallenge lines"
            self._attempt(
                failures,
                lambda: self._write_boxes(boxes_out),
                f"boxes of {frames} {_where(boxes_out)}",
                (boxes_out, holds),
            )
        json_out = self.options.json_out
        if json_out is not None:
            self._attempt(
                failures,
                lambda: write_json(json_out, self.summary()),
                f"the summary {_where(json_out)}",
                (json_out, "run summary"),
            )
        return failures[0] if failures else None

    def _write_boxes(self, path: Path) -> Path:
        """One ``x,y,w,h[,score]`` line per frame; MOTChallenge lines (frame and id from 1) for several targets."""
        records = self.result.records
        several = [r for r in records if isinstance(r, TargetsRecord)]
        if several:
            rows = [(r.index + 1, i, t.box_xywh, t.score) for r in several for i, t in r.targets.items()]
            return write_mot(path, rows)
        single = [r for r in records if isinstance(r, FrameRecord)]
        return write_boxes(path, [(r.box_xywh, r.score) for r in single], self.options.with_score)

    def _attempt(
        self, failures: list[OutputError], write: Callable[[], object], what: str, output: tuple[Path, str]
    ) -> None:
        """Run one output writer; a failure is recorded (and shown in the JSON summary) instead of raised.
        ``what`` goes into the closing message, ``output`` (path, what it holds) into :attr:`written`."""
        try:
            done = write()
        except OutputError as e:
            failures.append(e)
            self.result.error = self.result.error or str(e)
            return
        if done is not False:
            self.kept.append(what)
            self.written.append(output)

    def summary(self) -> dict[str, Any]:
        """The run summary with the model and source context (the ``--json-out`` document)."""
        return self.result.to_dict(
            source=self.source.info.description,
            source_kind=self.source.info.kind,
            backend=self.backend.name,
            config=self.backend.metadata.config,
            precision=self.backend.metadata.precision,
            threshold=self.options.threshold,
            lost_threshold=self.options.lost_threshold,
            outputs={
                k: str(v)
                for k, v in (
                    ("boxes", self.options.boxes_out),
                    ("video", self.options.video_out),
                    ("json", self.options.json_out),
                )
                if v is not None
            },
        )
