"""Local weights store: where released GRM checkpoints live on this machine, and how to fill it.

The store is ``$GRM_HOME/weights/<config>.pth.tar``; ``GRM_HOME`` defaults to ``$XDG_CACHE_HOME/grm-tracker``
(``~/.cache/grm-tracker``). It is filled from the official release archive ``Trained_Models.zip`` (one folder
per experiment, e.g. ``vitb_256_ep300/GRM_ep0300.pth.tar``) or by downloading that archive or one checkpoint.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from grm.runtime.atomic import CHUNK_BYTES, atomic_writer
from grm.runtime.errors import CheckpointError, ConfigError, InputError

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or None) while copying or downloading."""

RELEASE_ZIP = "Trained_Models.zip"
# Config name -> member of the official release archive (folder/file, any top-level folder above it).
OFFICIAL_MEMBERS: Mapping[str, str] = MappingProxyType(
    {
        "vitb_256": "vitb_256_ep300/GRM_ep0300.pth.tar",
        "vitb_256_got": "vitb_256_got_ep100/GRM_ep0100.pth.tar",
        "vitl_320": "vitl_320_ep300/GRM_ep0300.pth.tar",
    }
)
ENV_HOME = "GRM_HOME"


def grm_home() -> Path:
    """Root of the local store: ``$GRM_HOME``, else ``$XDG_CACHE_HOME/grm-tracker``, else ``~/.cache/grm-tracker``."""
    explicit = os.environ.get(ENV_HOME)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "grm-tracker"


def store_path(config: str, home: Path | None = None) -> Path:
    """Where the store keeps the checkpoint of ``config``."""
    return (home or grm_home()) / "weights" / f"{config}.pth.tar"


def missing_weights_message(config: str, path: Path) -> str:
    """One line: which file is missing and the two ways to get it."""
    return (
        f"no weights for config {config!r}: {path} does not exist; pass --checkpoint PATH, "
        f"or fill the store with 'grm-export fetch --from-zip {RELEASE_ZIP}' (or 'grm-export fetch --url URL')"
    )


def resolve_checkpoint(config: str, checkpoint: str | Path | None = None, home: Path | None = None) -> Path:
    """The checkpoint to export: ``checkpoint`` when given, else the store's file for ``config``.

    Raises:
        CheckpointError: the given file or the store's file does not exist.
    """
    if checkpoint is not None:
        from grm.train.checkpoint import check_checkpoint_file  # imports torch, which resolving needs anyway

        path = Path(checkpoint).expanduser()
        check_checkpoint_file(path)
        return path
    path = store_path(config, home)
    if not path.is_file():
        raise CheckpointError(missing_weights_message(config, path))
    return path


def find_member(names: Iterable[str], member: str) -> str | None:
    """The archive entry whose trailing folder/file equals ``member`` (any top-level folder above it)."""
    want = PurePosixPath(member).parts
    for name in names:
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if len(parts) >= len(want) and parts[-len(want) :] == want:
            return name
    return None


def fill_from_zip(
    zip_path: str | Path,
    configs: Iterable[str] | None = None,
    home: Path | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Path]:
    """Copy released checkpoints from ``Trained_Models.zip`` into the store; returns config -> stored path.

    With ``configs=None`` every known config present in the archive is taken; named configs must be present.

    Raises:
        InputError: the archive is missing or not a zip file.
        CheckpointError: a requested config (or, without a request, every config) is absent from the archive.
        ConfigError: a requested config has no official checkpoint.
    """
    path = Path(zip_path).expanduser()
    if not path.is_file():
        raise InputError(f"release archive not found: {path}; download {RELEASE_ZIP} from the GRM release page")
    wanted = _wanted_configs(configs)
    try:
        with zipfile.ZipFile(path) as archive:
            return _extract_configs(archive, path, wanted, configs is not None, home, progress)
    except zipfile.BadZipFile as e:
        raise InputError(f"{path} is not a zip archive ({e}); download {RELEASE_ZIP} again") from e


def _wanted_configs(configs: Iterable[str] | None) -> list[str]:
    wanted = list(OFFICIAL_MEMBERS) if configs is None else list(configs)
    unknown = [c for c in wanted if c not in OFFICIAL_MEMBERS]
    if unknown:
        raise ConfigError(f"no released checkpoint for {unknown}; released configs: {', '.join(OFFICIAL_MEMBERS)}")
    return wanted


def _extract_configs(
    archive: zipfile.ZipFile,
    path: Path,
    wanted: list[str],
    strict: bool,
    home: Path | None,
    progress: ProgressCallback | None,
) -> dict[str, Path]:
    names = archive.namelist()
    found = {c: find_member(names, OFFICIAL_MEMBERS[c]) for c in wanted}
    absent = [c for c, m in found.items() if m is None]
    if absent and (strict or len(absent) == len(wanted)):
        expected = ", ".join(OFFICIAL_MEMBERS[c] for c in absent)
        raise CheckpointError(f"{path} holds no {expected}; is it the official {RELEASE_ZIP}?")
    stored: dict[str, Path] = {}
    for config, member in found.items():
        if member is None:
            log.info("%s: %s not in %s, skipped", config, OFFICIAL_MEMBERS[config], path.name)
            continue
        stored[config] = _copy_member(archive, member, store_path(config, home), progress)
    return stored


def _copy_member(archive: zipfile.ZipFile, member: str, target: Path, progress: ProgressCallback | None) -> Path:
    total = archive.getinfo(member).file_size
    done = 0
    try:
        with archive.open(member) as src, atomic_writer(target) as dst:
            for chunk in iter(lambda: src.read(CHUNK_BYTES), b""):
                dst.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"could not extract {member} to {target}: {e}") from e
    log.info("stored %s (%d bytes) at %s", member, total, target)
    return target
