"""grm-run with several --box: MOTChallenge boxes file, per-target lost counts, colours, drawn boxes, bad boxes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from grm.runtime import outputs, session
from grm.runtime.annotate import RED, TARGET_COLOURS, draw_target, target_colour

from .runtime_fakes import square_frames, write_folder
from .test_cli import INIT, invoke

BOXES = [INIT, "80,40,20,20", "10,10,30,30"]  # on the square, on black, half on black


def read_mot(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


def _several(source: Path, model: Path, out: Path, *extra: str | Path) -> object:
    args: list[str | Path] = [source, "--model", model]
    for box in BOXES:
        args += ["--box", box]
    return invoke(*args, "--boxes-out", out, *extra)


def test_each_target_gets_the_boxes_it_gets_alone(tmp_path: Path, clip_video: Path, fake_onnx: Path) -> None:
    mot, summary, video = tmp_path / "mot.txt", tmp_path / "s.json", tmp_path / "v.avi"
    res = _several(clip_video, fake_onnx, mot, "--json-out", summary, "--video-out", video, "--lost-threshold", "0.5")
    assert res.exit_code == 0, res.stderr
    rows = read_mot(mot)
    assert len(rows) == 12 * 3 and all(len(r) == 10 and r[7:] == ["-1", "-1", "-1"] for r in rows)
    assert [(int(r[0]), int(r[1])) for r in rows] == [(f, i) for f in range(1, 13) for i in (1, 2, 3)]
    data = json.loads(summary.read_text())
    assert data["frames"] == 12 and data["tracked"] == 11 and set(data["targets"]) == {"1", "2", "3"}
    for k, box in enumerate(BOXES, start=1):
        alone = invoke(
            clip_video,
            "--box",
            box,
            "--model",
            fake_onnx,
            "--boxes-out",
            tmp_path / f"{k}.txt",
            "--with-score",
            "--json-out",
            tmp_path / f"{k}.json",
            "--lost-threshold",
            "0.5",
        )
        assert alone.exit_code == 0, alone.stderr
        expected = [line.split(",") for line in (tmp_path / f"{k}.txt").read_text().splitlines()]
        mine = [r[2:7] for r in rows if r[1] == str(k)]
        assert [r[2:] for r in mine] == [e[2:] for e in expected]  # w, h and score: the same text
        corners = np.array([r[:2] for r in mine], dtype=float) - 1  # x, y: 1-based in MOTChallenge files
        np.testing.assert_allclose(corners, np.array([e[:2] for e in expected], dtype=float), rtol=0, atol=1.01e-4)
        lost = json.loads((tmp_path / f"{k}.json").read_text())["lost_frames"]
        assert data["targets"][str(k)]["lost_frames"] == lost and data["targets"][str(k)]["lost"] == len(lost)
        assert data["targets"][str(k)]["init_box"] == [float(v) for v in box.split(",")]
    counts = [data["targets"][str(k)]["lost"] for k in (1, 2, 3)]
    assert counts[0] == 0 and counts[1] > 0  # the target on black is marked lost, the square is not
    first = res.stdout.splitlines()[0]
    assert first == "frames: 12 (11 tracked, 0 skipped), 3 targets, lost below score 0.5: " + ", ".join(
        f"target {k} {n}" for k, n in zip((1, 2, 3), counts, strict=True)
    )
    assert f"wrote {mot} (boxes of 3 targets, MOTChallenge lines)" in res.stdout
    assert f"wrote {video} (annotated video)" in res.stdout
    assert int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT)) == 12


def test_the_initial_line_of_each_target_has_score_one(tmp_path: Path, clip_video: Path, fake_onnx: Path) -> None:
    res = _several(clip_video, fake_onnx, tmp_path / "mot.txt", "--max-frames", "2")
    assert res.exit_code == 0, res.stderr
    rows = read_mot(tmp_path / "mot.txt")
    expected = []
    for k, box in enumerate(BOXES, start=1):
        x, y, w, h = (float(v) for v in box.split(","))
        expected.append(
            ["1", str(k), f"{x + 1:.4f}", f"{y + 1:.4f}", f"{w:.4f}", f"{h:.4f}", "1.0000", "-1", "-1", "-1"]
        )
    assert rows[:3] == expected  # x, y counted from 1 as in MOTChallenge files


def test_mot_file_reads_in_py_motmetrics(tmp_path: Path, clip_video: Path, fake_onnx: Path) -> None:
    mm = pytest.importorskip("motmetrics")
    mot = tmp_path / "mot.txt"
    assert _several(clip_video, fake_onnx, mot).exit_code == 0
    frame = mm.io.loadtxt(str(mot), fmt="mot15-2D")
    assert len(frame) == 36 and list(frame.index.names) == ["FrameId", "Id"]
    first = frame.loc[(1, 2)]
    assert (first["X"], first["Y"], first["Width"], first["Height"], first["Confidence"]) == (80, 40, 20, 20, 1)
    # what it loads are the tracker's image-pixel boxes (its 1-based convention undone)
    np.testing.assert_allclose(
        frame.loc[1][["X", "Y", "Width", "Height"]].to_numpy(), [[float(v) for v in box.split(",")] for box in BOXES]
    )


def test_a_skipped_frame_repeats_every_box(tmp_path: Path, fake_onnx: Path) -> None:
    folder = write_folder(tmp_path / "seq", square_frames(6)[0])
    (folder / "4.png").write_bytes(b"corrupt")  # frame index 3, MOT frame 4
    res = _several(folder, fake_onnx, tmp_path / "mot.txt", "--json-out", tmp_path / "s.json")
    assert res.exit_code == 0, res.stderr
    rows = read_mot(tmp_path / "mot.txt")
    skipped = [r for r in rows if r[0] == "4"]
    before = [r for r in rows if r[0] == "3"]
    assert [r[2:6] for r in skipped] == [r[2:6] for r in before] and all(r[6] == "nan" for r in skipped)
    assert json.loads((tmp_path / "s.json").read_text())["skipped_frames"] == [3]


@pytest.mark.parametrize(
    "bad, needle", [("500,50,20,20", "lies outside the 160x120 image"), ("30,50,0,20", "zero or negative size")]
)
def test_a_bad_box_is_named_by_its_place(
    tmp_path: Path, clip_video: Path, fake_onnx: Path, bad: str, needle: str
) -> None:
    res = invoke(
        clip_video,
        "--model",
        fake_onnx,
        "--box",
        INIT,
        "--box",
        bad,
        "--box",
        "80,40,20,20",
        "--boxes-out",
        tmp_path / "mot.txt",
    )
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("grm-run: error: --box 2 of 3: ") and needle in lines[0]
    assert not (tmp_path / "mot.txt").exists()


class _Window:
    """Stands in for the --show window: keeps the frames it was given."""

    shown: list[np.ndarray] = []

    def __init__(self) -> None:
        _Window.shown = []

    def show(self, frame: np.ndarray) -> bool:
        _Window.shown.append(frame.copy())
        return True

    def close(self) -> None:
        pass


def test_show_without_box_draws_several(
    tmp_path: Path, clip_video: Path, fake_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outputs, "require_display", lambda purpose: None)
    monkeypatch.setattr("grm.runtime.cli.require_display", lambda purpose: None)
    monkeypatch.setattr(session, "WindowSink", _Window)
    monkeypatch.setattr(cv2, "destroyWindow", lambda name: None)
    monkeypatch.setattr(cv2, "selectROIs", lambda *a, **k: np.array([[30, 50, 20, 20], [80, 40, 20, 20]]))
    res = invoke(clip_video, "--model", fake_onnx, "--show", "--boxes-out", tmp_path / "mot.txt")
    assert res.exit_code == 0, res.stderr
    rows = read_mot(tmp_path / "mot.txt")
    assert len(rows) == 24 and {r[1] for r in rows} == {"1", "2"} and len(_Window.shown) == 12
    # each target's box edge in its own colour on the first shown frame (lossless: drawn before any encoder)
    assert tuple(_Window.shown[0][60, 80]) == target_colour(2) and tuple(_Window.shown[0][60, 30]) == target_colour(1)
    # one drawn box: the single-target boxes file, as with --box
    monkeypatch.setattr(cv2, "selectROIs", lambda *a, **k: np.array([[30, 50, 20, 20]]))
    res = invoke(clip_video, "--model", fake_onnx, "--show", "--boxes-out", tmp_path / "one.txt")
    assert res.exit_code == 0, res.stderr
    plain = invoke(clip_video, "--model", fake_onnx, "--box", INIT, "--boxes-out", tmp_path / "plain.txt")
    assert plain.exit_code == 0 and (tmp_path / "one.txt").read_text() == (tmp_path / "plain.txt").read_text()
    monkeypatch.setattr(cv2, "selectROIs", lambda *a, **k: np.empty((0, 4)))
    res = invoke(clip_video, "--model", fake_onnx, "--show")
    assert res.exit_code == 2 and "no box was drawn" in res.stderr


def test_draw_target_colour_id_and_lost() -> None:
    frame = np.zeros((100, 120, 3), np.uint8)
    draw_target(frame, (20, 40, 40, 30), 2)
    colour = target_colour(2)
    assert tuple(frame[55, 20]) == colour and tuple(frame[40, 40]) == colour  # left and top edges
    band = frame[25:38, 20:30].reshape(-1, 3)
    assert (band == colour).all(axis=1).mean() > 0.5  # the id's band above the box
    lost = np.zeros_like(frame)
    draw_target(lost, (20, 40, 40, 30), 2, lost=True)
    assert (lost.reshape(-1, 3) == RED).all(axis=1).any()  # "2 LOST" in red on the band
    assert len(set(TARGET_COLOURS)) == len(TARGET_COLOURS) and RED not in TARGET_COLOURS
    assert target_colour(1) == target_colour(1 + len(TARGET_COLOURS))
    untouched = np.zeros_like(frame)
    draw_target(untouched, (math.nan, 0, 1, 1), 1)
    assert not untouched.any()
