"""Output writers, drawing and statistics: files read back, pixels and percentiles checked by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from grm.runtime.annotate import MASK_TINT, decision_map, draw_box, overlay_decisions
from grm.runtime.atomic import atomic_path, atomic_write_text
from grm.runtime.errors import InputError, OutputError
from grm.runtime.outputs import VideoSink, format_boxes, write_json
from grm.runtime.session import FrameRecord, RunResult, parse_box
from grm.runtime.stats import format_summary, latency_ms, percentiles_ms
from grm.runtime.tracker import StageTimes


def test_format_boxes() -> None:
    rows = [((1, 2, 3, 4), 1.0), ((1.23456, 2, 3, 4), 0.5), ((1.23456, 2, 3, 4), math.nan)]
    assert format_boxes(rows, with_score=False) == "1.0000,2.0000,3.0000,4.0000\n" + "1.2346,2.0000,3.0000,4.0000\n" * 2
    assert format_boxes(rows, with_score=True).splitlines()[1:] == [
        "1.2346,2.0000,3.0000,4.0000,0.5000",
        "1.2346,2.0000,3.0000,4.0000,nan",
    ]


def test_json_nan_becomes_null(tmp_path: Path) -> None:
    write_json(tmp_path / "s.json", {"fps": math.nan, "nested": {"x": [1.0, math.inf]}})
    assert json.loads((tmp_path / "s.json").read_text()) == {"fps": None, "nested": {"x": [1.0, None]}}


def test_atomic_write_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_video_sink_without_frames_writes_nothing(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "v.mp4", fps=None)
    sink.close()
    assert list(tmp_path.iterdir()) == []


def test_video_sink_keeps_the_first_frame_size(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "v.avi", fps=5)
    sink.write(np.zeros((40, 60, 3), np.uint8))
    sink.write(np.zeros((80, 100, 3), np.uint8))
    sink.close()
    cap = cv2.VideoCapture(str(tmp_path / "v.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 60


def test_video_sink_unknown_encoder(tmp_path: Path) -> None:
    sink = VideoSink(tmp_path / "v.xyz", fps=5)
    with pytest.raises(OutputError, match="cannot write the video .*could not open an encoder"):
        sink.write(np.zeros((40, 60, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_draw_box_skips_nan() -> None:
    frame = np.zeros((50, 50, 3), np.uint8)
    draw_box(frame, (math.nan, 0, 10, 10), (0, 255, 0))
    assert not frame.any()
    draw_box(frame, (10, 10, 20, 20), (0, 255, 0))
    assert frame[10, 10:31, 1].all() and not frame[20, 20].any()


def test_decision_map_is_the_share_of_blocks() -> None:
    decisions = np.zeros((3, 4), np.int32)
    decisions[:, 0] = 1
    decisions[0, 3] = 1
    np.testing.assert_allclose(decision_map(decisions, 2), [[1, 0], [0, 1 / 3]])


def test_overlay_tints_joined_tokens_over_the_search_region() -> None:
    frame = np.full((100, 100, 3), 100, np.uint8)
    decisions = np.zeros((2, 4), np.int32)
    decisions[:, 0] = 1  # top-left token joined in every block
    # previous box 10x10 centred at (50, 50); factor 4 -> 40 px search region from (30, 30) to (70, 70)
    overlay_decisions(frame, decisions, (45, 45, 10, 10), search_factor=4.0, feat_size=2, alpha=0.5)
    expected = (100 * 0.5 + MASK_TINT * 0.5).astype(np.uint8)
    np.testing.assert_array_equal(frame[40, 40], expected)  # inside the top-left token
    np.testing.assert_array_equal(frame[60, 60], [100, 100, 100])  # bottom-right token: not joined
    np.testing.assert_array_equal(frame[10, 10], [100, 100, 100])  # outside the search region


def test_overlay_clips_at_the_image_border() -> None:
    frame = np.full((20, 20, 3), 100, np.uint8)
    # region (-15, -15)..(25, 25) covers the whole 20x20 image; every token joined
    overlay_decisions(frame, np.ones((1, 4), np.int32), (0, 0, 10, 10), search_factor=4.0, feat_size=2, alpha=0.5)
    np.testing.assert_array_equal(
        frame.reshape(-1, 3), np.tile((100 * 0.5 + MASK_TINT * 0.5).astype(np.uint8), (400, 1))
    )


def test_percentiles_by_hand() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    p = percentiles_ms(values)
    assert p["p50"] == pytest.approx(50.5) and p["p90"] == pytest.approx(90.1) and p["p99"] == pytest.approx(99.01)
    assert all(math.isnan(v) for v in percentiles_ms([]).values())


def test_latency_split_and_summary_text() -> None:
    times = [StageTimes(preprocess=0.001, inference=0.010, postprocess=0.0005)] * 4
    lat = latency_ms(times)
    assert lat["inference"]["p50"] == pytest.approx(10) and lat["total"]["p99"] == pytest.approx(11.5)
    records = [FrameRecord(index=0, box_xywh=(0, 0, 1, 1), score=1.0, status="init")] + [
        FrameRecord(index=i, box_xywh=(0, 0, 1, 1), score=0.2, status="tracked", lost=True, times=t)
        for i, t in enumerate(times, start=1)
    ]
    result = RunResult(records=records, wall_time_s=0.5)
    summary = result.to_dict(lost_threshold=0.3)
    assert summary["fps"] == pytest.approx(10) and summary["lost_frames"] == [1, 2, 3, 4]
    text = format_summary(summary)
    assert "fps: 10.0 (5 frames / 0.50 s" in text and "lost: 4 below score 0.3" in text
    assert "  inference         10.00    10.00    10.00" in text


@pytest.mark.parametrize(
    "text, box", [("1,2,3,4", (1, 2, 3, 4)), ("1.5, 2, 3 ,4", (1.5, 2, 3, 4)), ("1 2 3 4", (1, 2, 3, 4))]
)
def test_parse_box(text: str, box) -> None:
    assert parse_box(text) == box


def test_parse_box_rejects_nan() -> None:
    with pytest.raises(InputError, match="NaN"):
        parse_box("nan,1,2,3")
