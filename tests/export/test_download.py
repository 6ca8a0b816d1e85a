"""Resumable download against a local HTTP server on 127.0.0.1 (Range requests, interruption, digest)."""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from grm.export.download import download, part_path
from grm.runtime.errors import CheckpointError

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB + 4, not a multiple of the chunk size


class _Server:
    """Serves PAYLOAD at /w.pth.tar; optionally cuts the first response short or ignores Range."""

    def __init__(self) -> None:
        self.cut_after: int | None = None
        self.honour_range = True
        self.ranges: list[str | None] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/w.pth.tar"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                if self.path != "/w.pth.tar":
                    self.send_error(404)
                    return
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", header or "")
                if match and server.honour_range:
                    start = int(match.group(1))
                    if start >= len(PAYLOAD):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        return Handler


@pytest.fixture()
def server() -> Iterator[_Server]:
    srv = _Server()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_download_whole_file_with_progress_and_digest(server: _Server, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    dest = download(
        server.url,
        tmp_path / "w.pth.tar",
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        progress=lambda d, t: seen.append((d, t)),
    )
    assert dest.read_bytes() == PAYLOAD
    assert seen[0] == (0, len(PAYLOAD)) and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert not part_path(dest).exists()


def test_interrupted_download_resumes_with_range(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "w.pth.tar"
    server.cut_after = 300_000
    with pytest.raises(CheckpointError, match="run the same command again to resume"):
        download(server.url, dest)
    assert not dest.exists()
    kept = part_path(dest).stat().st_size
    assert 0 < kept <= 300_000
    seen: list[tuple[int, int | None]] = []
    download(server.url, dest, sha256=hashlib.sha256(PAYLOAD).hexdigest(), progress=lambda d, t: seen.append((d, t)))
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges == [None, f"bytes={kept}-"]
    assert seen[0] == (kept, len(PAYLOAD))


def test_server_ignoring_range_restarts_cleanly(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "w.pth.tar"
    part_path(dest).write_bytes(b"stale bytes from an older attempt")
    server.honour_range = False
    download(server.url, dest)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_answered_416_is_finished(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "w.pth.tar"
    part_path(dest).write_bytes(PAYLOAD)
    download(server.url, dest, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD


def test_digest_mismatch_deletes_part(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "w.pth.tar"
    with pytest.raises(CheckpointError, match="expected 0000"):
        download(server.url, dest, sha256="0" * 64)
    assert not dest.exists() and not part_path(dest).exists()


def test_http_error_and_unreachable_host(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="404"):
        download(server.url.replace("w.pth.tar", "missing"), tmp_path / "m")
    port = server.httpd.server_address[1]
    server.httpd.shutdown()
    server.httpd.server_close()
    with pytest.raises(CheckpointError, match="download of http://127.0.0.1"):
        download(f"http://127.0.0.1:{port}/w.pth.tar", tmp_path / "n", timeout_s=2)
