"""Atomic file writes and file digests.

Writes go to a temporary file in the target's folder, then ``os.replace`` puts it into place, so readers see
either the old file or the complete new one, never a half-written file, even when the process is interrupted.

Two kinds of target are written in place instead, because renaming over them would destroy them: ``-``
(standard output) and an existing character device, FIFO or socket, or a symbolic link to one (``/dev/null``,
``/dev/stdout``, a named pipe). A write error there (``/dev/full``: no space) still raises ``OSError``.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, cast

CHUNK_BYTES = 1 << 20


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_default_mode(path: str | Path) -> None:
    """Give a file created by ``mkstemp`` (mode 0600) the permissions a plain ``open`` would (0666 & ~umask)."""
    os.chmod(path, 0o666 & ~current_umask())


def temp_path_for(target: Path) -> Path:
    """A new empty file beside ``target`` with the same suffix and the permissions a plain ``open`` would give."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{target.suffix}", dir=target.parent)
    os.close(fd)
    make_default_mode(tmp)
    return Path(tmp)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix, so writers that sniff it work); replace on success.

    The temporary file is removed when the block raises. For ``-`` and device files or FIFOs the temporary
    file lies in the system's temporary folder and its bytes are copied to the target when the block succeeds.
    """
    if is_stream(path):
        with tempfile.TemporaryDirectory(prefix="grm-") as folder:
            tmp = Path(folder) / f"output{Path(str(path)).suffix}"
            yield tmp
            with open(tmp, "rb") as src, _stream_writer(path) as out:
                for chunk in iter(lambda: src.read(CHUNK_BYTES), b""):
                    out.write(chunk)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = temp_path_for(target)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


STDOUT = "-"


def is_stream(path: str | Path) -> bool:
    """Whether ``path`` is written in place: ``-`` or an existing non-regular, non-folder file (links followed)."""
    if str(path) == STDOUT:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


@contextmanager
def named_errors(path: str | Path) -> Iterator[None]:
    """Give an OSError raised without a file name (a failed write or flush: ENOSPC, EIO) the name ``path``."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


@contextmanager
def _stream_writer(path: str | Path) -> Iterator[BinaryIO]:
    """Standard output or a device/FIFO opened in place; flushed before the block ends so errors surface here."""
    with named_errors("standard output" if str(path) == STDOUT else path):
        if str(path) == STDOUT:
            out = cast(BinaryIO, sys.stdout.buffer)
            sys.stdout.flush()
            yield out
            out.flush()
            return
        with open(path, "wb") as f:
            yield f
            f.flush()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (in place for ``-`` and device files); return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """Open a binary temporary file beside ``path``; on success it is synced and replaces ``path`` in one step.

    ``-`` and existing device files or FIFOs are written in place (see the module docstring).
    """
    if is_stream(path):
        with _stream_writer(path) as out:
            yield out
        return
    with named_errors(path), atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_writer(path) as f:
        f.write(data)
    return Path(path)


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of in-memory bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
