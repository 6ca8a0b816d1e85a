"""Frame sources: video file, frame folder (natural order, corrupt frames), camera index, stream URL."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from grm.runtime import sources
from grm.runtime.errors import InputError
from grm.runtime.sources import natural_key, open_source

from .runtime_fakes import square_frames, write_folder, write_video


def test_video_file(clip_video: Path, clip_frames) -> None:
    src = open_source(clip_video)
    assert src.info.kind == "video" and src.info.frame_count == 12 and src.info.fps == pytest.approx(10.0)
    frames = list(src)
    src.close()
    assert [i for i, _ in frames] == list(range(12))
    for (_, got), want in zip(frames, clip_frames[0], strict=True):
        assert got.shape == (120, 160, 3) and got.dtype == np.uint8
        assert np.abs(got.astype(int) - want).mean() < 8  # MJPG is lossy
    assert not src.ended_early


def test_folder_in_natural_order(tmp_path: Path) -> None:
    frames = [np.full((8, 8, 3), 10 * i, np.uint8) for i in range(4)]
    write_folder(tmp_path / "seq", frames, names=["img_10.png", "img_2.png", "IMG_1.png", "img_9.png"])
    (tmp_path / "seq" / "notes.txt").write_text("not a frame")
    src = open_source(tmp_path / "seq")
    assert [p.name for p in src.files] == ["IMG_1.png", "img_2.png", "img_9.png", "img_10.png"]
    assert src.info.kind == "folder" and src.info.frame_count == 4
    values = [int(f[0, 0, 0]) for _, f in src]
    assert values == [20, 10, 30, 0]


def test_natural_key() -> None:
    assert sorted(["10.jpg", "9.jpg", "100.jpg", "0009a.jpg"], key=natural_key) == [
        "9.jpg",
        "0009a.jpg",
        "10.jpg",
        "100.jpg",
    ]


def test_corrupt_frame_in_folder_yields_none(tmp_path: Path, caplog) -> None:
    """The source yields None and names the file; its reader reports it (a warning here would be a second line
    before a reader's one-line error)."""
    frames, _ = square_frames(4)
    folder = write_folder(tmp_path / "seq", frames)
    (folder / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    source = open_source(folder)
    got = list(source)
    assert [i for i, _ in got] == [0, 1, 2, 3]
    assert got[2][1] is None and all(f is not None for i, f in got if i != 2)
    assert source.frame_name(2) == "3.png" and not caplog.records


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no image files"):
        open_source(tmp_path / "empty")


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="source not found"):
        open_source(tmp_path / "nope.mp4")


def test_unreadable_video(tmp_path: Path) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(InputError, match="cannot open video"):
        open_source(tmp_path / "bad.mp4")


def test_video_that_ends_early(tmp_path: Path, clip_frames, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """A container announcing more frames than it delivers (truncated download, dropped stream)."""
    path = write_video(tmp_path / "short.avi", clip_frames[0][:5])
    real_info = sources._capture_info
    monkeypatch.setattr(
        sources,
        "_capture_info",
        lambda cap, kind, desc: sources.SourceInfo(**{**real_info(cap, kind, desc).__dict__, "frame_count": 9}),
    )
    src = open_source(path)
    assert len(list(src)) == 5
    assert src.ended_early and "ended after 5 of 9 frames" in caplog.text


class FakeCapture:
    """cv2.VideoCapture stand-in for cameras and streams (none exist on a test machine)."""

    opened: list = []

    def __init__(self, target, frames=3, opens=True) -> None:
        self.target, self.left, self.opens = target, frames, opens
        FakeCapture.opened.append(target)

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.opens

    def get(self, prop: int) -> float:
        return 25.0 if prop == cv2.CAP_PROP_FPS else -1.0

    def read(self):
        if self.left == 0:
            return False, None
        self.left -= 1
        return True, np.zeros((6, 8), np.uint8)  # a grey camera

    def release(self) -> None:
        self.left = 0


def test_camera_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    src = open_source("0")
    assert FakeCapture.opened[-1] == 0 and isinstance(FakeCapture.opened[-1], int)
    assert src.info.kind == "camera" and src.info.frame_count is None and src.info.fps == 25.0
    frames = [f for _, f in src]
    assert len(frames) == 3 and frames[0].shape == (6, 8, 3)  # grey converted to 3 channels
    assert not src.ended_early


def test_stream_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    src = open_source("rtsp://camera.local/stream1")
    assert FakeCapture.opened[-1] == "rtsp://camera.local/stream1" and src.info.kind == "stream"
    assert len(list(src)) == 3


def test_camera_that_does_not_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cv2, "VideoCapture", lambda target: FakeCapture(target, opens=False))
    with pytest.raises(InputError, match="cannot open camera 7: no camera with that index"):
        open_source("7")
    with pytest.raises(InputError, match="cannot open stream http://x/y: check the URL"):
        open_source("http://x/y")


def test_demo_clip_is_deterministic_and_boxes_hold_the_object() -> None:
    from grm.runtime.demo import DemoSource, demo_clip, demo_init_box

    frames, boxes = demo_clip(frames=30)
    again, _ = demo_clip(frames=30)
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))
    assert demo_init_box() == boxes[0]
    for frame, (x, y, w, h) in zip(frames, boxes, strict=True):
        x, y, w, h = int(x), int(y), int(w), int(h)
        assert 0 <= x and x + w <= frame.shape[1] and 0 <= y and y + h <= frame.shape[0]
        np.testing.assert_array_equal(frame[y, x + w // 2], [0, 0, 255])  # the object's red rim
    src = DemoSource(frames=5)
    assert src.info.kind == "demo" and [i for i, _ in src] == [0, 1, 2, 3, 4]
