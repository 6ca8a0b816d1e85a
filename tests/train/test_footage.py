"""Real-footage data step: the fetch manifest (resume, checksums) with a fake fetcher, flow tracks on a
generated clip with a known target path, box placement on texture, and the written GOT-10k dataset."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from grm.runtime.atomic import sha256_bytes
from grm.runtime.errors import DatasetError
from grm.train.data.footage import FootageSource, extract_members, fetch_footage, read_manifest, select_sources
from grm.train.data.got10k import Got10k
from grm.train.data.pairs import (
    PairSpec,
    carry_box,
    dense_flows,
    propose_box,
    still_sequence,
    texture_map,
    write_pairs,
)
from tests.badinput import check_one_line_failure, run_main

MEDIA = {"pkg/data/clip.bin": b"video bytes", "pkg/data/photo.bin": b"photo bytes", "pkg/other.txt": b"not wanted"}


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip archive with fixed timestamps, so its SHA-256 is stable."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


ARCHIVE = _zip_bytes(MEDIA)
SOURCE = FootageSource(
    name="demo",
    registry="pypi",
    package="demo",
    version="1.0",
    archive_sha256=sha256_bytes(ARCHIVE),
    prefix="pkg/data/",
    members=("clip.bin", "photo.bin"),
    licence="CC0",
)


class FakeFetcher:
    """Writes a prepared archive instead of calling pip; counts its calls."""

    def __init__(self, payload: bytes = ARCHIVE, name: str = "demo-1.0-py3-none-any.whl") -> None:
        self.payload, self.name, self.calls = payload, name, 0

    def __call__(self, source: FootageSource, folder: Path) -> Path:
        self.calls += 1
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.name
        path.write_bytes(self.payload)
        return path


def test_fetch_records_checksums_and_resumes_without_download(tmp_path):
    fetcher = FakeFetcher()
    first = fetch_footage(tmp_path, [SOURCE], fetcher)
    assert first.fetched == ("demo",) and first.files == 2 and fetcher.calls == 1
    assert (tmp_path / "media" / "demo" / "clip.bin").read_bytes() == b"video bytes"
    assert not (tmp_path / "media" / "demo" / "other.txt").exists()
    entry = json.loads((tmp_path / "manifest.json").read_text())["sources"]["demo"]
    assert entry["files"]["photo.bin"] == {"sha256": sha256_bytes(b"photo bytes"), "bytes": 11}
    assert entry["archive_sha256"] == SOURCE.archive_sha256 and entry["requirement"] == "demo==1.0"
    assert not (tmp_path / ".archives" / "demo").exists()  # archives are removed after unpacking

    again = fetch_footage(tmp_path, [SOURCE], fetcher)
    assert again.verified == ("demo",) and again.fetched == () and fetcher.calls == 1


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "delete"])
def test_a_damaged_file_is_fetched_again(tmp_path, damage):
    fetcher = FakeFetcher()
    fetch_footage(tmp_path, [SOURCE], fetcher)
    path = tmp_path / "media" / "demo" / "clip.bin"
    if damage == "corrupt":
        path.write_bytes(b"videX bytes")  # same size, other bytes: only the checksum tells
    elif damage == "truncate":
        path.write_bytes(b"video")
    else:
        path.unlink()
    result = fetch_footage(tmp_path, [SOURCE], fetcher)
    assert result.fetched == ("demo",) and fetcher.calls == 2
    assert path.read_bytes() == b"video bytes"


@pytest.mark.parametrize(
    "manifest",
    ["not json", '{"sources": {"demo": {"requirement": "demo==1.0", "files": {"clip.bin": 1, "photo.bin": {}}}}}'],
)
def test_an_unreadable_manifest_means_fetch_again(tmp_path, manifest):
    fetcher = FakeFetcher()
    fetch_footage(tmp_path, [SOURCE], fetcher)
    (tmp_path / "manifest.json").write_text(manifest)
    assert fetch_footage(tmp_path, [SOURCE], fetcher).fetched == ("demo",) and fetcher.calls == 2
    assert read_manifest(tmp_path)["sources"]["demo"]["files"]["clip.bin"]["bytes"] == 11


def test_a_new_package_version_is_fetched_again(tmp_path):
    fetcher = FakeFetcher()
    fetch_footage(tmp_path, [SOURCE], fetcher)
    newer = FootageSource(**{**SOURCE.__dict__, "version": "2.0"})
    assert fetch_footage(tmp_path, [newer], fetcher).fetched == ("demo",) and fetcher.calls == 2
    assert read_manifest(tmp_path)["sources"]["demo"]["requirement"] == "demo==2.0"


def test_other_archive_bytes_or_a_missing_member_are_errors(tmp_path):
    with pytest.raises(DatasetError, match="differs from the pinned"):
        fetch_footage(tmp_path / "a", [SOURCE], FakeFetcher(_zip_bytes({**MEDIA, "pkg/data/clip.bin": b"changed"})))
    partial = _zip_bytes({"pkg/data/clip.bin": b"video bytes"})
    unpinned = FootageSource(**{**SOURCE.__dict__, "archive_sha256": sha256_bytes(partial)})
    with pytest.raises(DatasetError, match="lacks photo.bin"):
        fetch_footage(tmp_path / "b", [unpinned], FakeFetcher(partial))
    assert not (tmp_path / "b" / "manifest.json").exists()  # nothing recorded for a failed source


def test_members_come_out_of_a_debian_package(tmp_path):
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w:xz") as tar:
        for name, data in (("./usr/share/doc/x/a.jpg", b"abc"), ("./usr/share/doc/x/b.txt", b"skip")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data_tar = tar_buffer.getvalue()
    members = [(b"debian-binary", b"2.0\n"), (b"data.tar.xz", data_tar)]
    deb = b"!<arch>\n" + b"".join(
        name.ljust(16)
        + b"0".ljust(12)
        + b"0".ljust(6)
        + b"0".ljust(6)
        + b"100644".ljust(8)
        + str(len(body)).encode().ljust(10)
        + b"`\n"
        + body
        + (b"\n" if len(body) % 2 else b"")
        for name, body in members
    )
    path = tmp_path / "x_1_all.deb"
    path.write_bytes(deb)
    assert list(extract_members(path, "usr/share/doc/x/", ["a.jpg"])) == [("a.jpg", b"abc")]


def test_fetch_footage_names_the_folder_and_the_next_command(tmp_path, capsys, monkeypatch):
    from grm.train import main
    from grm.train.data import footage

    monkeypatch.setattr(footage, "fetch_footage", lambda *a, **k: footage.FetchResult(("opencv-doc",), (), 7))
    outcome = run_main(main, ["fetch-footage", "--output", str(tmp_path / "f"), "--sources", "opencv-doc"], capsys)
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.splitlines()[-2:] == [
        f"wrote {tmp_path / 'f' / 'media'} (7 files; fetched 1 sources, 0 already intact)",
        f"next: grm-train build-pairs --footage {tmp_path / 'f'} --output realdata",
    ]


def test_unknown_source_names_are_user_errors(capsys):
    from grm.train import main

    with pytest.raises(DatasetError, match="unknown footage source 'nope'"):
        select_sources(["nope"])
    assert [s.name for s in select_sources(["opencv-doc"])] == ["opencv-doc"]
    check_one_line_failure(
        run_main(main, ["fetch-footage", "--output", "x", "--sources", "nope"], capsys),
        2,
        "grm-train",
        ["grm-train: error: ", "unknown footage source"],
    )


# ---------------------------------------------------------------------------------------------- media


def _texture(rng: np.random.Generator, h: int, w: int, cell: int = 4) -> np.ndarray:
    """Blocky random RGB texture (uint8), rich in corners so optical flow locks on."""
    small = rng.integers(0, 256, (h // cell + 1, w // cell + 1, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (w + cell, h + cell), interpolation=cv2.INTER_NEAREST)[:h, :w], (3, 3), 0)


def _moving_patch_clip(n: int = 30, occlude_at: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """A static textured background and a 40x32 textured patch moving 2.5, 1.5 px per frame; returns frames, boxes."""
    rng = np.random.default_rng(0)
    background, patch = _texture(rng, 160, 220), _texture(rng, 32, 40, cell=3)
    frames, boxes = [], []
    for t in range(n):
        x, y = 30 + 2.5 * t, 40 + 1.5 * t
        matrix = np.float32([[1, 0, x], [0, 1, y]])
        mask = cv2.warpAffine(np.ones((32, 40), np.float32), matrix, (220, 160))[..., None]
        moved = cv2.warpAffine(patch, matrix, (220, 160)).astype(np.float32)
        frame = background * (1 - mask) + moved * mask
        if occlude_at is not None and t >= occlude_at:
            frame[30:110, 60:180] = 128  # a flat board covers the patch's path
        frames.append(frame.astype(np.uint8))
        boxes.append([x, y, 40, 32])
    return frames, np.asarray(boxes)


def test_flow_carried_box_follows_the_moving_patch():
    frames, truth = _moving_patch_clip()
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    boxes = carry_box(grays, *dense_flows(grays), truth[0])
    assert len(boxes) == len(frames)
    assert np.abs(boxes[:, :2] - truth[:, :2]).max() < 3.0  # pixels, over 29 frames of motion
    assert np.abs(boxes[:, 2:] / truth[:, 2:] - 1).max() < 0.1


def test_track_stops_when_the_target_is_covered():
    frames, truth = _moving_patch_clip(occlude_at=12)
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    boxes = carry_box(grays, *dense_flows(grays), truth[0])
    assert 8 <= len(boxes) <= 12  # kept up to the last frame before the board
    assert np.abs(boxes[:, :2] - truth[: len(boxes), :2]).max() < 3.0


def _half_textured_image() -> np.ndarray:
    """Flat grey except a textured 120x100 region at x 150..270, y 20..120."""
    image = np.full((200, 320, 3), 120, np.uint8)
    image[20:120, 150:270] = _texture(np.random.default_rng(1), 100, 120)
    return image


def test_boxes_are_placed_on_texture():
    image = _half_textured_image()
    texture = texture_map(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    rng = np.random.default_rng(2)
    for _ in range(20):
        x, y, w, h = propose_box(texture, rng)
        inside = max(0, min(x + w, 270) - max(x, 150)) * max(0, min(y + h, 120) - max(y, 20))
        assert inside >= 0.8 * w * h


def test_still_views_carry_the_box_with_the_content():
    image = _half_textured_image()
    seq = still_sequence(image, np.random.default_rng(5), PairSpec(views=20))
    assert len(seq.frames) == 20 and seq.boxes.shape == (20, 4)
    assert all(f.shape == image.shape for f in seq.frames)
    reference = _crop(seq.frames[0], seq.boxes[0])
    scores = [
        _ncc(reference, _crop(f, b))
        for f, b, v in zip(seq.frames, seq.boxes, seq.visible_fraction, strict=True)
        if v == 1.0
    ]
    assert len(scores) >= 10 and np.median(scores) > 0.5  # the boxed content is the same in every view
    shifts = seq.boxes[:, :2] - seq.boxes[0, :2]
    assert np.abs(shifts).max() > 10  # views move the target around the frame


def _crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    x, y, w, h = box
    matrix = np.float32([[w / 32, 0, x], [0, h / 32, y]])
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.warpAffine(gray, matrix, (32, 32), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_AREA)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-6))


def test_written_dataset_reads_back_and_resumes(tmp_path):
    media = tmp_path / "footage" / "media" / "demo"
    media.mkdir(parents=True)
    cv2.imwrite(str(media / "photo.png"), cv2.cvtColor(_half_textured_image(), cv2.COLOR_RGB2BGR))
    frames, _ = _moving_patch_clip(n=26)
    writer = cv2.VideoWriter(str(media / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (220, 160))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    spec = PairSpec(stills=2, synth=1, tracks_per_window=2, views=20, still_every=10)
    root = write_pairs(tmp_path / "footage", tmp_path / "out", spec, seed=3)
    names = (root / "list.txt").read_text().split()
    assert {n.split("_")[0] for n in names} == {"still", "synth", "track"}
    dataset = Got10k(root)
    for i, name in enumerate(dataset.sequences):
        info = dataset.sequence_info(i)
        assert len(info) >= 20 and info.visible.sum() > 4, name  # what the pair sampler requires
    track = names.index(next(n for n in names if n.startswith("track")))
    assert dataset.frame(track, 0).shape == (160, 220, 3)
    majors = {n.split("_")[0]: (root / n / "meta_info.ini").read_text() for n in names}
    assert "major_class: real still" in majors["still"] and "clip.avi" in majors["track"]
    assert "major_class: synthetic" in majors["synth"]  # each sequence says where its frames came from

    stamp = (root / names[0] / "00000001.jpg").stat().st_mtime_ns
    assert write_pairs(tmp_path / "footage", tmp_path / "out", spec, seed=3) == root
    assert (root / names[0] / "00000001.jpg").stat().st_mtime_ns == stamp  # complete sequences are kept
    assert (root / "list.txt").read_text().split() == names


def test_build_pairs_without_footage_is_a_user_error(tmp_path, capsys):
    from grm.train import main

    check_one_line_failure(
        run_main(main, ["build-pairs", "--footage", str(tmp_path / "none"), "--output", str(tmp_path / "out")], capsys),
        2,
        "grm-train",
        ["grm-train: error: ", "fetch the footage first"],
    )
