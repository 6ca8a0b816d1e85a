"""Resumable HTTP(S) download with progress, SHA-256 check and an atomic final rename.

Bytes go to ``<dest>.part`` beside the destination; a later call continues it with an HTTP ``Range`` request
(servers that ignore ranges make it start over). Only a complete, verified file is renamed to ``dest``.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from grm.export.weights import ProgressCallback
from grm.runtime.atomic import CHUNK_BYTES, sha256_file
from grm.runtime.errors import CheckpointError

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def part_path(dest: Path) -> Path:
    """The partial file a download into ``dest`` resumes from."""
    return dest.with_name(dest.name + ".part")


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    progress: ProgressCallback | None = None,
    timeout_s: float = 30.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download; returns ``dest``.

    Args:
        url: http(s) or file URL.
        dest: final path; written only once the whole body has arrived (and matches ``sha256`` when given).
        sha256: expected hex digest; a mismatch deletes the partial file and raises.
        progress: called with (bytes done, total bytes or None).
        timeout_s: socket timeout in seconds.

    Raises:
        CheckpointError: network failure (the partial file is kept, so running again resumes), or a bad digest.
    """
    target = Path(dest).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    offset = part.stat().st_size if part.exists() else 0
    try:
        _fetch(url, part, offset, progress, timeout_s)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        kept = part.stat().st_size if part.exists() else 0
        raise CheckpointError(
            f"download of {url} failed ({e}); run the same command again to resume ({kept} bytes kept)"
        ) from e
    _verify(part, sha256, url)
    os.replace(part, target)
    log.info("downloaded %s to %s", url, target)
    return target


def _fetch(url: str, part: Path, offset: int, progress: ProgressCallback | None, timeout_s: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "grm-tracker"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310 (user-given URL by design)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the partial file already holds everything the server has
            log.info("server reports %s complete at %d bytes", url, offset)
            return
        raise
    with response:
        start, total = _resume_point(response, offset)
        mode = "ab" if start else "wb"
        with open(part, mode) as f:
            if start == 0:
                f.truncate(0)
            _copy(response, f, start, total, progress)


def _resume_point(response: object, offset: int) -> tuple[int, int | None]:
    """(first byte this response carries, total size or None) from the status and headers."""
    status = getattr(response, "status", 200)
    headers = getattr(response, "headers", {})
    length = headers.get("Content-Length")
    if status == 206:
        match = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != offset:
            raise ValueError(f"server answered the range request with {headers.get('Content-Range')!r}")
        total = match.group(3)
        return offset, int(total) if total != "*" else None
    if offset:
        log.info("server ignored the range request; restarting the download")
    return 0, int(length) if length is not None else None


def _copy(src: BinaryIO, dst: BinaryIO, done: int, total: int | None, progress: ProgressCallback | None) -> None:
    if progress is not None:
        progress(done, total)
    for chunk in iter(lambda: src.read(CHUNK_BYTES), b""):
        dst.write(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    if total is not None and done != total:
        raise OSError(f"connection closed after {done} of {total} bytes")


def _verify(part: Path, sha256: str | None, url: str) -> None:
    if not sha256:
        return
    actual = sha256_file(part)
    if actual != sha256.lower():
        part.unlink(missing_ok=True)
        raise CheckpointError(
            f"download of {url} has sha256 {actual}, expected {sha256.lower()}; the partial file was deleted, "
            "check the URL and --sha256 and download again"
        )
