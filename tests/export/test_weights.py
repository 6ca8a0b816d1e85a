"""Weights store: location, resolution, and filling from the official release archive."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from grm.export import weights
from grm.runtime.atomic import current_umask
from grm.runtime.errors import CheckpointError, ConfigError, InputError


def test_home_honours_grm_home_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRM_HOME", str(tmp_path / "store"))
    assert weights.grm_home() == tmp_path / "store"
    monkeypatch.delenv("GRM_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.grm_home() == tmp_path / "xdg" / "grm-tracker"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert weights.grm_home() == tmp_path / "h" / ".cache" / "grm-tracker"


def test_resolve_prefers_explicit_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "mine.pth.tar"
    torch.save({"net": {}}, ckpt)  # resolving checks the file looks like a checkpoint, not its weights
    assert weights.resolve_checkpoint("vitb_256", ckpt, home=tmp_path) == ckpt
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.pth"):
        weights.resolve_checkpoint("vitb_256", tmp_path / "nope.pth", home=tmp_path)


def test_missing_store_file_names_file_and_both_remedies(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        weights.resolve_checkpoint("vitb_256", home=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "weights" / "vitb_256.pth.tar") in message
    assert "--checkpoint PATH" in message and "fetch --from-zip Trained_Models.zip" in message and "--url" in message


def _release_zip(path: Path, prefix: str, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(prefix + "README.txt", b"release")
        for name, data in members.items():
            archive.writestr(prefix + name, data)
    return path


@pytest.mark.parametrize("prefix", ["", "Trained_Models/", "a/b/"])
def test_fill_from_zip_maps_official_folders(tmp_path: Path, prefix: str) -> None:
    archive = _release_zip(
        tmp_path / "Trained_Models.zip",
        prefix,
        {
            "vitb_256_ep300/GRM_ep0300.pth.tar": b"B" * 3000,
            "vitb_256_got_ep100/GRM_ep0100.pth.tar": b"G" * 10,
            "vitl_320_ep300/GRM_ep0300.pth.tar": b"L" * 20,
            "vitb_256_ep300/GRM_ep0299.pth.tar": b"wrong epoch",
        },
    )
    seen: list[tuple[int, int | None]] = []
    home = tmp_path / "home"
    stored = weights.fill_from_zip(archive, home=home, progress=lambda d, t: seen.append((d, t)))
    assert set(stored) == {"vitb_256", "vitb_256_got", "vitl_320"}
    assert (home / "weights" / "vitb_256.pth.tar").read_bytes() == b"B" * 3000
    assert (home / "weights" / "vitb_256_got.pth.tar").read_bytes() == b"G" * 10
    assert weights.resolve_checkpoint("vitl_320", home=home).read_bytes() == b"L" * 20
    assert (3000, 3000) in seen
    assert (home / "weights" / "vitb_256.pth.tar").stat().st_mode & 0o777 == 0o666 & ~current_umask()
    assert not list((home / "weights").glob(".*tmp"))


def test_fill_from_zip_partial_archive(tmp_path: Path) -> None:
    archive = _release_zip(tmp_path / "t.zip", "", {"vitb_256_got_ep100/GRM_ep0100.pth.tar": b"G"})
    assert set(weights.fill_from_zip(archive, home=tmp_path)) == {"vitb_256_got"}
    with pytest.raises(CheckpointError, match="holds no vitb_256_ep300/GRM_ep0300.pth.tar"):
        weights.fill_from_zip(archive, configs=["vitb_256"], home=tmp_path)


def test_fill_from_zip_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="release archive not found"):
        weights.fill_from_zip(tmp_path / "absent.zip", home=tmp_path)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a zip archive"):
        weights.fill_from_zip(bad, home=tmp_path)
    empty = _release_zip(tmp_path / "e.zip", "", {})
    with pytest.raises(CheckpointError, match="is it the official Trained_Models.zip"):
        weights.fill_from_zip(empty, home=tmp_path)
    with pytest.raises(ConfigError, match="no released checkpoint for \\['tiny'\\]"):
        weights.fill_from_zip(empty, configs=["tiny"], home=tmp_path)


def test_find_member_needs_whole_folder_name() -> None:
    names = ["x/old_vitb_256_ep300/GRM_ep0300.pth.tar", "x\\vitb_256_ep300\\GRM_ep0300.pth.tar"]
    assert weights.find_member(names, "vitb_256_ep300/GRM_ep0300.pth.tar") == names[1]
    assert weights.find_member(names[:1], "vitb_256_ep300/GRM_ep0300.pth.tar") is None


def test_resolve_names_a_device_or_empty_checkpoint(tmp_path: Path) -> None:
    """The same file checks as loading a checkpoint: a device is not reported as missing."""
    with pytest.raises(CheckpointError, match="/dev/null is not a regular file"):
        weights.resolve_checkpoint("tiny", Path("/dev/null"), home=tmp_path)
    empty = tmp_path / "empty.pth.tar"
    empty.touch()
    with pytest.raises(CheckpointError, match="is empty"):
        weights.resolve_checkpoint("tiny", empty, home=tmp_path)
