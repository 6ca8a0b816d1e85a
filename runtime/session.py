"""One tracking run: read frames, track, draw, and write every output, also after an early end or Ctrl-C.

The boxes file keeps one line per input frame (see :mod:`grm.runtime.outputs` for its format and what a
skipped frame holds). ``--lost-threshold`` only *marks* frames whose score is below it (JSON summary,
red box in the video); it never changes a box.
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

from grm.runtime.annotate import GREEN, RED, draw_box, draw_status, overlay_decisions
from grm.runtime.atomic import STDOUT
from grm.runtime.backends.base import Backend
from grm.runtime.errors import GrmError, InputError, OutputError
from grm.runtime.outputs import VideoSink, WindowSink, select_box, write_boxes, write_json
from grm.runtime.sources import FrameSource
from grm.runtime.stats import FPS_DEFINITION, latency_ms
from grm.runtime.tracker import StageTimes, Tracker

log = logging.getLogger(__name__)
Box = tuple[float, float, float, float]


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """What to track and where the results go (paths None = output not wanted)."""

    box_xywh: Sequence[float] | None = None
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


@dataclass
class RunResult:
    """Everything a run produced, for the summary and ``--json-out``."""

    records: list[FrameRecord] = field(default_factory=list)
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
        tracked = [r for r in self.records if r.status == "tracked"]
        return {
            **context,
            "frames": len(self.records),
            "tracked": len(tracked),
            "skipped_frames": [r.index for r in self.records if r.status == "skipped"],
            "lost_frames": [r.index for r in self.records if r.lost],
            "wall_time_s": self.wall_time_s,
            "fps": self.fps,
            "fps_definition": FPS_DEFINITION,
            "time_to_first_frame_s": self.time_to_first_frame_s,
            "latency_ms": latency_ms([r.times for r in tracked if r.times is not None]),
            "interrupted": self.interrupted,
            "stopped_by_user": self.stopped_by_user,
            "ended_early": self.ended_early,
            "error": self.error,
            "init_box": list(self.records[0].box_xywh) if self.records else None,
            "last_box": list(self.records[-1].box_xywh) if self.records else None,
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
    """Runs a :class:`Tracker` over a frame source and feeds the outputs.

    Args:
        backend: an opened model.
        source: frames (BGR).
        options: what to track and what to write.
        on_frame: called after every frame with the record and the running fps (progress bars).
        started_at: ``time.perf_counter()`` value of the process start, to measure time to first frame.
        source_fps: frame rate for ``--video-out`` (the source's when known).
    """

    def __init__(
        self,
        backend: Backend,
        source: FrameSource,
        options: RunOptions,
        *,
        on_frame: Callable[[FrameRecord, float], None] | None = None,
        started_at: float | None = None,
        source_fps: float | None = None,
    ) -> None:
        self.backend = backend
        self.source = source
        self.options = options
        self.tracker = Tracker(backend, threshold=options.threshold)
        self.on_frame = on_frame
        self.started_at = started_at
        self.result = RunResult()
        self.kept: list[str] = []  # what _finish wrote, for the closing message ("boxes of 12 frames in b.txt")
        self._video = VideoSink(options.video_out, source_fps) if options.video_out else None
        self._window = WindowSink() if options.show else None
        self._t0 = 0.0
        self._prev_box: Box | None = None
        self._decisions: NDArray[np.int8] | None = None

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

    def _step(self, index: int, frame: NDArray[np.uint8] | None) -> FrameRecord:
        if frame is None:
            name = getattr(self.source, "frame_name", None)
            label = f"frame {index} ({name(index)})" if name is not None else f"frame {index}"
            if self.tracker.state is None:
                raise InputError(f"{label} cannot be decoded; the first frame must be readable to initialise")
            log.warning("%s cannot be decoded; skipped (previous box repeated, score nan)", label)
            return FrameRecord(index=index, box_xywh=self.tracker.state, score=math.nan, status="skipped")
        if self.tracker.state is None:
            return self._initialize(index, frame)
        return self._track(index, frame)

    def _initialize(self, index: int, frame: NDArray[np.uint8]) -> FrameRecord:
        box = self.options.box_xywh if self.options.box_xywh is not None else select_box(frame)
        self.tracker.initialize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), box)
        state = self.tracker.state
        assert state is not None, "initialize sets the tracker state"
        self._prev_box = state
        return FrameRecord(index=index, box_xywh=state, score=1.0, status="init")

    def _track(self, index: int, frame: NDArray[np.uint8]) -> FrameRecord:
        self._prev_box = self.tracker.state
        t0 = time.perf_counter()
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        convert = time.perf_counter() - t0
        res = self.tracker.track(rgb)
        if self.result.time_to_first_frame_s is None and self.started_at is not None:
            self.result.time_to_first_frame_s = time.perf_counter() - self.started_at
        self._decisions = res.decisions
        lost = self.options.lost_threshold is not None and res.score < self.options.lost_threshold
        times = replace(res.times, preprocess=res.times.preprocess + convert)
        return FrameRecord(
            index=index, box_xywh=res.box_xywh, score=res.score, status="tracked", lost=lost, times=times
        )

    def _emit(self, frame: NDArray[np.uint8] | None, record: FrameRecord) -> bool:
        """Draw and show/write the frame; False when the user closed the window."""
        if frame is None or (self._video is None and self._window is None):
            return True
        self._annotate(frame, record)
        if self._video is not None:
            self._video.write(frame)
        return self._window.show(frame) if self._window is not None else True

    def _annotate(self, frame: NDArray[np.uint8], record: FrameRecord) -> None:
        decisions = self._decisions if record.status == "tracked" else None
        params = self.tracker.params
        if decisions is not None and self._prev_box is not None and self.options.overlay_masks:
            overlay_decisions(frame, decisions, self._prev_box, params.search_factor, params.feat_size)
        draw_box(frame, record.box_xywh, RED if record.lost else GREEN)
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        text = f"#{record.index}  score {record.score:.2f}  {len(self.result.records) / elapsed:.1f} fps"
        draw_status(frame, text + ("  LOST" if record.lost else ""), RED if record.lost else (255, 255, 255))

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
            self._attempt(failures, video.close, f"the annotated video {video.path}")
        records = self.result.records
        boxes_out = self.options.boxes_out
        if boxes_out is not None and records:
            rows = [(r.box_xywh, r.score) for r in records]
            self._attempt(
                failures,
                lambda: write_boxes(boxes_out, rows, self.options.with_score),
                f"boxes of {len(records)} frame{'s' if len(records) != 1 else ''} {_where(boxes_out)}",
            )
        json_out = self.options.json_out
        if json_out is not None:
            self._attempt(failures, lambda: write_json(json_out, self.summary()), f"the summary {_where(json_out)}")
        return failures[0] if failures else None

    def _attempt(self, failures: list[OutputError], write: Callable[[], object], what: str) -> None:
        """Run one output writer; a failure is recorded (and shown in the JSON summary) instead of raised."""
        try:
            done = write()
        except OutputError as e:
            failures.append(e)
            self.result.error = self.result.error or str(e)
            return
        if done is not False:
            self.kept.append(what)

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
