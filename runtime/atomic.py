"""Atomic file writes and file digests.

Writes go to a temporary file in the target's folder, then ``os.replace`` puts it into place, so readers see
either the old file or the complete new one, never a half-written file, even when the process is interrupted.

Two kinds of target are written in place instead, because renaming over them would destroy them: ``-``
(standard output) and an existing character device, FIFO or socket, or a symbolic link to one (``/dev/null``,
``/dev/stdout``, a named pipe). A write error there (``/dev/full``: no space) still raises ``OSError``.
"""

from __future__ import annotations

import hashlib
import io
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
    if str(path) == STDOUT or names_descriptor(path):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def names_descriptor(path: str | Path) -> bool:
    """Whether ``path`` is, or links through, an open file descriptor's name (``/dev/stdout`` ->
    ``/proc/self/fd/1``): renaming a file over it would replace the link, not write to the descriptor."""
    current = Path(path)
    for _ in range(40):  # the kernel's own limit on symbolic link chains
        parts = current.absolute().parts
        if parts[:3] == ("/", "dev", "fd") or (parts[:2] == ("/", "proc") and "fd" in parts[2:4]):
            return True
        if not current.is_symlink():
            return False
        link = Path(os.readlink(current))
        current = link if link.is_absolute() else current.parent / link
    return False


def writes_to_stdout(path: str | Path) -> bool:
    """``-``, or a name of the file this process's standard output already writes (``/dev/stdout``, its pipe)."""
    if str(path) == STDOUT:
        return True
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


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
        if writes_to_stdout(path):  # not reopened: that would truncate a '>>' redirect
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


@contextmanager
def scratch_files() -> Iterator[list[Path]]:
    """A list to append temporary paths to; each one still present when the block ends is removed.

    For outputs written under a temporary name and renamed only after a check (export parity, the INT8 gate):
    however the block ends (an error, Ctrl-C), no temporary file stays behind.
    """
    paths: list[Path] = []
    try:
        yield paths
    finally:
        for path in paths:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass


def scratch_path_for(target: Path) -> Path:
    """A new empty temporary file for what will become ``target``: beside it (its folder created), so that a rename
    puts it into place; in the system's temporary folder when ``target`` is written in place (:func:`is_stream`)."""
    if is_stream(target):
        fd, tmp = tempfile.mkstemp(prefix="grm-", suffix=f".partial{target.suffix}")
        os.close(fd)
        return Path(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    return temp_path_for(target)
