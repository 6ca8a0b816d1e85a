"""The HTML benchmark report: same numbers as the Markdown/JSON report, self-contained, renders in Chromium."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from grm.benchmarks import cli
from grm.benchmarks.datasets import Sequence
from grm.benchmarks.html_report import THUMB_SIDE, worst_frame

from .bench_fakes import still_boxes, write_boxes
from .test_run import otb_tree

CHROMIUM = Path("/usr/bin/chromium")
SEQUENCES = {"Deer": 71, "KiteSurf": 84, "Skiing": 81}


class PageParser(HTMLParser):
    """Tables by id (header texts; rows of (text, data-v)), fetchable references, images, SVGs and figures."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, list]] = {}
        self.refs: list[str] = []
        self.images: list[str] = []
        self.svgs = 0
        self.tags: list[str] = []
        self._table: str | None = None
        self._in_body = False
        self._cell: list | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href", "xlink:href") and v is not None]
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag == "svg":
            self.svgs += 1
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = {"head": [], "rows": []}
        elif tag == "tbody" and self._table:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.tables[self._table]["rows"].append([])
        elif tag in ("td", "th") and self._table:
            self._cell, self._text = [tag, a.get("data-v")], []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            kind, value = self._cell
            text = "".join(self._text)
            if kind == "th":
                self.tables[self._table]["head"].append(text)
            else:
                self.tables[self._table]["rows"][-1].append((text, value))
            self._cell = None
        elif tag == "table":
            self._table, self._in_body = None, False


def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text())
    return parser


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every pipe table of a Markdown file, in order, as rows of cells (separator rows dropped)."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if set("".join(cells)) != {"-"}:
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


@pytest.fixture
def html_report(tmp_path, monkeypatch):
    """Two trackers on three OTB sequences with attributes, scored by 'grm-bench analyze --html' in a work folder.

    Skiing's frames are removed, so its lost-frame entries cannot have a thumbnail.
    """
    root = otb_tree(tmp_path / "otb", tuple(SEQUENCES))
    shutil.rmtree(root / "Skiing" / "img")
    flags = {"Deer": "1,0,1,0,0,1,1,0,0,0,0", "KiteSurf": "0,1,1,1,0,0,0,1,0,1,0", "Skiing": "1,1,1,1,1,0,0,1,0,0,1"}
    for name, line in flags.items():
        (root / "att").mkdir(exist_ok=True)
        (root / "att" / f"{name}.txt").write_text(line + "\n")
    rng = np.random.default_rng(3)
    for label, jitter in (("steady", 2.0), ("shaky", 9.0)):
        for name, n in SEQUENCES.items():
            boxes = still_boxes(n) + rng.normal(0, jitter, (n, 4)) * [1, 1, 0.3, 0.3]
            write_boxes(tmp_path / "res" / label / f"{name}.txt", boxes)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = ["analyze", "--dataset", "otb", "--data-root", str(root), "--partial", "--no-plots", "--html", "r.html"]
    for label in ("steady", "shaky"):
        args += ["--results", str(tmp_path / "res" / label)]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert f"wrote {Path('r.html')}" in result.output and "file://" in result.output
    return work


def test_html_numbers_equal_markdown_and_json(html_report):
    page = parse_page(html_report / "r.html")
    md = markdown_tables((html_report / "otb_pytracking.md").read_text())
    report = json.loads((html_report / "otb_pytracking.json").read_text())
    assert len(md) == 3  # trackers, attributes, per sequence
    for table_id, expected in zip(("summary", "attributes", "sequences"), md, strict=True):
        table = page.tables[table_id]
        assert table["head"] == expected[0]
        assert [[text for text, _ in row] for row in table["rows"]] == expected[1:]
    trackers = {t["label"]: t for t in report["trackers"]}
    head = page.tables["summary"]["head"]
    for row in page.tables["summary"]["rows"]:
        t = trackers[row[0][0]]
        for key in ("AUC", "OP50", "OP75", "Prec", "NormPrec"):
            text, value = row[head.index(key)]
            assert float(value) == t["summary"][key] and text == f"{t['summary'][key]:.1f}"
        assert row[head.index("Sequences")][1] == "3"
    head = page.tables["sequences"]["head"]
    for row in page.tables["sequences"]["rows"]:
        for label, t in trackers.items():
            for key in ("AUC", "Prec"):
                assert float(row[head.index(f"{label} {key}")][1]) == t["per_sequence"][row[0][0]][key]
    for row in page.tables["attributes"]["rows"]:
        name = row[0][0].split(" (")[0]
        for (_, value), t in zip(row[1:], report["trackers"], strict=True):
            assert float(value) == t["attributes"][name]["AUC"]
    svg = (html_report / "r.html").read_text()
    for t in report["trackers"]:  # plot legends carry the same AUC, precision and normalised precision
        for key in ("AUC", "Prec", "NormPrec"):
            assert f"{t['label']} [{t['summary'][key]:.1f}]" in svg


def test_html_is_self_contained_with_lost_frames(html_report):
    page = parse_page(html_report / "r.html")
    assert all(ref.startswith(("data:", "#")) for ref in page.refs), [r[:40] for r in page.refs]
    assert "link" not in page.tags and page.svgs == 3
    assert len(page.images) == 2 * 2  # two trackers x (Deer, KiteSurf); Skiing has no frames
    for src in page.images:
        prefix = "data:image/jpeg;base64,"
        assert src.startswith(prefix)
        image = cv2.imdecode(np.frombuffer(base64.b64decode(src[len(prefix) :]), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and max(image.shape[:2]) == THUMB_SIDE and len(src) < 40_000
        assert (image[..., 1] > 150).any() and (image[..., 2] > 150).any()  # the green and red boxes
    text = (html_report / "r.html").read_text()
    assert text.count("frame not readable") == 2 and text.count("Skiing, frame") == 2
    assert "<h3>steady</h3>" in text and "<h3>shaky</h3>" in text


def test_worst_frame_is_the_lowest_iou_where_the_target_is_visible():
    gt = still_boxes(80)
    pred = gt.copy()
    pred[20, :2] += 200  # lost, but the target is not visible there: does not count
    pred[30, :2] += 100  # lost, far away
    pred[60, :2] += 40  # lost, nearer: same IoU 0, smaller centre error
    pred[50, 0] += 5  # partly off
    visible = np.ones(80, bool)
    visible[20] = False
    seq = Sequence("s", (), "lasot", gt, visible=visible)
    frame, iou, norm = worst_frame(pred, seq, "pytracking")
    assert (frame, iou) == (30, 0.0) and norm == pytest.approx(np.hypot(100, 100) / 20)
    assert worst_frame(gt[:1], Sequence("one", (), "otb", gt[:1]), "otb") is None


def _move_above(fd: int, lowest: int) -> int:
    """The same pipe end on a descriptor >= ``lowest`` (close-on-exec), the old descriptor closed."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return moved


class Cdp:
    """A minimal Chrome DevTools Protocol client over --remote-debugging-pipe (no network port, no packages)."""

    def __init__(self, args: list[str]) -> None:
        to_browser, self._in = os.pipe()
        self._out, from_browser = os.pipe()
        # above 4, so that the child's dup2 onto the protocol's fixed descriptors never clobbers a source
        to_browser, from_browser = (_move_above(fd, 10) for fd in (to_browser, from_browser))

        def child() -> None:  # the protocol's fixed descriptors: 3 = commands in, 4 = replies out
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self.proc = subprocess.Popen(  # noqa: S603 - a fixed local binary
            [str(CHROMIUM), "--remote-debugging-pipe", *args],
            preexec_fn=child,  # noqa: PLW1509 - dup2 only, before exec
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._out, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buf += chunk
        message, self._buf = self._buf.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, timeout: float = 60, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._in, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._read(deadline))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._in)
        os.close(self._out)


def chromium_args(profile: Path) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",  # test containers run as root
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        f"--user-data-dir={profile}",
        "--window-size=1280,2000",
    ]


def page_errors(events: list[dict]) -> list[str]:
    """Uncaught exceptions, console errors/warnings and failed loads (e.g. a blocked network fetch)."""
    out = []
    for e in events:
        p = e.get("params", {})
        if e.get("method") == "Runtime.exceptionThrown":
            details = p["exceptionDetails"]
            out.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            out.append(f"console.{p['type']}: {p.get('args')}")
        elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            out.append(f"{p['entry']['source']}: {p['entry']['text']}")
    return out


SORT_CHECK = """(() => {
  const t = document.getElementById("sequences"), th = t.tHead.rows[0].cells[1];
  const col = () => Array.from(t.tBodies[0].rows, r => parseFloat(r.cells[1].getAttribute("data-v")));
  th.click(); const first = col(); th.click(); const second = col();
  return {first, second, sort: th.getAttribute("aria-sort")};
})()"""
DOM_CHECK = """(() => ({
  plots: Array.from(document.querySelectorAll("#plots svg"), s => {
    const r = s.getBoundingClientRect(); return [r.width, r.height, s.querySelectorAll("path").length];
  }),
  images: Array.from(document.images, i => i.complete && i.naturalWidth > 0),
  rows: document.querySelectorAll("#summary tbody tr").length,
}))()"""


@pytest.mark.skipif(
    not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)
def test_html_renders_in_headless_chromium(html_report, tmp_path):
    page = html_report / "r.html"
    shot = tmp_path / "shot.png"
    logged = subprocess.run(  # noqa: S603 - a fixed local binary
        [
            str(CHROMIUM),
            *chromium_args(tmp_path / "profile1"),
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), logged.stderr[-2000:]
    assert [line for line in logged.stderr.splitlines() if ":CONSOLE" in line] == []
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (2000, 1280) and float(image.std()) > 20  # not a blank page
    assert float(image[150:600].std()) > 20  # the plots' band has content

    browser = Cdp(chromium_args(tmp_path / "profile2"))
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.call(f"{domain}.enable", session)
        browser.call("Page.navigate", session, url=page.as_uri())
        browser.wait_event("Page.loadEventFired")
        dom = browser.call("Runtime.evaluate", session, expression=DOM_CHECK, returnByValue=True)["result"]["value"]
        sort = browser.call("Runtime.evaluate", session, expression=SORT_CHECK, returnByValue=True)["result"]["value"]
        errors = page_errors(browser.events)
    finally:
        browser.close()
    assert errors == []
    assert len(dom["plots"]) == 3 and all(w > 300 and h > 200 and paths > 10 for w, h, paths in dom["plots"])
    assert dom["images"] == [True] * 4 and dom["rows"] == 2
    assert sort["first"] == sorted(sort["first"], reverse=True) and sort["second"] == sorted(sort["second"])
    assert sort["sort"] == "ascending" and sort["first"] != sort["second"]
