"""An analysis report as one self-contained HTML page: opens from disk in any browser, no server, no network.

The page holds the success, precision and normalised-precision plots (inline SVG from :mod:`plots`), the
tracker, attribute and per-sequence tables (the rows of :mod:`report`, so every number reads exactly as in
the Markdown report; columns sort on a click), and for each tracker the frames where it lost the target
most: the scored frames with the lowest IoU (ties: largest centre error in target sizes), at most one per
sequence, drawn as small JPEG thumbnails with the ground-truth (green) and predicted (red) boxes when the
dataset's frames can be read. Styles and the sorting script are inline.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.benchmarks.analysis import AnalysisReport, align_leading, frame_errors
from grm.benchmarks.datasets import Dataset, Sequence
from grm.benchmarks.frames import read_rgb
from grm.benchmarks.plots import svg_plots
from grm.benchmarks.report import Cell, Table, attribute_rows, cell_text, legend, sequence_rows, summary_rows
from grm.benchmarks.results import ResultSet
from grm.benchmarks.textio import read_boxes
from grm.runtime.atomic import atomic_write_text
from grm.runtime.errors import InputError
from grm.runtime.version import __version__

THUMB_SIDE = 200  # px, longer side of a lost-frame thumbnail
JPEG_QUALITY = 80
GT_BGR, PRED_BGR = (40, 200, 40), (40, 40, 230)
PLOT_TITLES = {"success": "Success", "precision": "Precision", "norm_precision": "Normalised precision"}


@dataclass(frozen=True)
class LostFrame:
    """A frame where a tracker lost the target: 0-based frame index in the sequence, IoU (0..1), thumbnail."""

    sequence: str
    frame: int
    iou: float
    center_norm: float
    thumbnail: str | None = None  # base64 JPEG, None when the frame cannot be read


def worst_frame(pred: NDArray[np.float64], seq: Sequence, protocol: str) -> tuple[int, float, float] | None:
    """(frame, IoU, normalised centre error) of the scored frame with the lowest IoU where the target is visible.

    Frames that do not count (invalid or absent ground truth, no result row) are skipped; ties on IoU go to
    the larger centre error in target sizes. None when no frame qualifies.
    """
    errors = frame_errors(pred, seq, protocol)
    ok = errors.valid & (errors.iou >= 0) & np.isfinite(errors.center_norm)
    if seq.visible is not None:
        ok &= np.asarray(seq.visible, dtype=bool)
    ok[len(pred) :] = False
    ok[0] = False  # the initial frame is the ground truth
    candidates = np.flatnonzero(ok)
    if len(candidates) == 0:
        return None
    i = int(candidates[np.lexsort((-errors.center_norm[candidates], errors.iou[candidates]))[0]])
    return i, float(errors.iou[i]), float(errors.center_norm[i])


def thumbnail(frame: Path, gt: NDArray[np.float64], pred: NDArray[np.float64], side: int = THUMB_SIDE) -> str | None:
    """Base64 JPEG of the region around both boxes (xywh px) with the boxes drawn; None if the frame is unreadable."""
    if not frame.is_file():  # analysis runs on trees without image folders
        return None
    try:
        image = cv2.cvtColor(read_rgb(frame), cv2.COLOR_RGB2BGR)
    except InputError:
        return None
    drawn = [(b, c) for b, c in ((gt, GT_BGR), (pred, PRED_BGR)) if np.all(np.isfinite(b)) and b[2] > 0 and b[3] > 0]
    if not drawn:
        return None
    boxes = [b for b, _ in drawn]
    h, w = image.shape[:2]
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    half = max(x1 - x0, y1 - y0, 32.0)  # context: the union's longer side on each side of its centre
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(max(0, math.floor(cx - half))), int(max(0, math.floor(cy - half)))
    right, bottom = int(min(w, math.ceil(cx + half))), int(min(h, math.ceil(cy + half)))
    if right - left < 2 or bottom - top < 2:
        return None
    scale = side / max(right - left, bottom - top)
    crop = cv2.resize(
        image[top:bottom, left:right],
        (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale))),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    for box, colour in drawn:
        p0 = (round((box[0] - left) * scale), round((box[1] - top) * scale))
        p1 = (round((box[0] + box[2] - left) * scale), round((box[1] + box[3] - top) * scale))
        cv2.rectangle(crop, p0, p1, colour, 2)
    ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return base64.b64encode(data.tobytes()).decode("ascii") if ok else None


def lost_frames(
    report: AnalysisReport, dataset: Dataset, sets: list[ResultSet], count: int = 6
) -> dict[str, list[LostFrame]]:
    """Per tracker label, the ``count`` frames where it lost the target most (at most one per sequence)."""
    seqs = [dataset.load(name) for name in report.sequences]
    out: dict[str, list[LostFrame]] = {}
    for rs in sets:
        found = []
        for seq in seqs:
            path = rs.find(seq.name, seq.aliases)
            if path is None:
                continue
            pred = align_leading(read_boxes(path), seq)
            worst = worst_frame(pred, seq, report.protocol)
            if worst is not None:
                found.append((seq, pred, *worst))
        found.sort(key=lambda f: (f[3], -f[4]))
        out[rs.label] = [
            LostFrame(
                seq.name,
                i,
                iou,
                norm,
                thumbnail(seq.frames[i], seq.gt[i], pred[i]) if i < len(seq.frames) else None,
            )
            for seq, pred, i, iou, norm in found[:count]
        ]
    return out


def _cell(cell: Cell, tag: str = "td") -> str:
    """A table cell; numeric cells carry their full value in ``data-v`` for sorting."""
    text = html.escape(cell_text(cell))
    if isinstance(cell, str):
        return f"<{tag}>{text}</{tag}>"
    value = "" if cell is None or not math.isfinite(cell) else str(cell) if isinstance(cell, int) else repr(float(cell))
    return f'<{tag} class="num" data-v="{value}">{text}</{tag}>'


def table_html(table: Table, table_id: str) -> str:
    head, rows = table
    th = "".join(f'<th scope="col" title="Sort">{html.escape(h)}</th>' for h in head)
    body = "\n".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return (
        f'<table class="sortable" id="{table_id}">\n<thead><tr>{th}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'
    )


def _lost_html(lost: dict[str, list[LostFrame]]) -> str:
    parts = []
    for label, frames in lost.items():
        items = []
        for f in frames:
            img = (
                f'<img alt="{html.escape(f.sequence)} frame {f.frame + 1}" src="data:image/jpeg;base64,{f.thumbnail}">'
                if f.thumbnail
                else '<div class="noimg">frame not readable</div>'
            )
            caption = f"{html.escape(f.sequence)}, frame {f.frame + 1}: IoU {f.iou:.2f}"
            items.append(f"<figure>{img}<figcaption>{caption}</figcaption></figure>")
        body = "".join(items) or "<p>No scored frame.</p>"
        parts.append(
            f'<h3>{html.escape(label)}</h3>\n<div class="lost" data-tracker="{html.escape(label)}">{body}</div>'
        )
    return "\n".join(parts)


def render_html(report: AnalysisReport, lost: dict[str, list[LostFrame]] | None = None) -> str:
    """The whole page as a string (see the module docstring)."""
    title = f"{report.dataset}: {len(report.sequences)} sequences, protocol {report.protocol}"
    plots = "\n".join(
        f'<figure class="plot" id="plot-{key}" aria-label="{PLOT_TITLES[key]} plot">{svg}</figure>'
        for key, svg in svg_plots(report).items()
    )
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(legend(report))} Click a column header to sort.</p>",
        f'<section id="plots"><h2>Curves</h2><div class="plots">{plots}</div></section>',
        f"<section><h2>Trackers</h2>{table_html(summary_rows(report), 'summary')}</section>",
    ]
    attr = attribute_rows(report)
    if attr is not None:
        sections.append(f"<section><h2>AUC per attribute</h2>{table_html(attr, 'attributes')}</section>")
    if report.missing:
        items = "".join(
            f"<li>{html.escape(label)}: {html.escape(', '.join(names))}</li>" for label, names in report.missing.items()
        )
        sections.append(f"<section><h2>Sequences left out (missing results)</h2><ul>{items}</ul></section>")
    sections.append(f"<section><h2>Per sequence</h2>{table_html(sequence_rows(report), 'sequences')}</section>")
    if lost:
        sections.append(
            '<section id="lost-frames"><h2>Where each tracker lost the target most</h2>'
            "<p>Lowest-IoU scored frame of the worst sequences; ground truth green, prediction red.</p>"
            f"{_lost_html(lost)}</section>"
        )
    return PAGE.format(
        title=html.escape(f"grm-bench: {title}"),
        style=STYLE,
        body="\n".join(sections),
        footer=html.escape(f"grm-tracker {__version__}"),
        script=SCRIPT,
    )


def write_html(
    report: AnalysisReport,
    path: str | Path,
    dataset: Dataset | None = None,
    sets: list[ResultSet] | None = None,
    lost_per_tracker: int = 6,
) -> Path:
    """Write the page atomically; lost-frame thumbnails need the dataset and the result sets."""
    lost = lost_frames(report, dataset, sets, lost_per_tracker) if dataset is not None and sets else None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, render_html(report, lost))


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
<footer>{footer}</footer>
<script>{script}</script>
</body>
</html>
"""

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1240px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 15px; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; } figure.plot svg { width: 396px; height: auto; display: block; }
figcaption { font-size: 12px; color: #555; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f0f2f5; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
.lost { display: flex; flex-wrap: wrap; gap: 10px; }
.lost img { display: block; border: 1px solid #bbb; }
.noimg { width: 160px; height: 90px; display: flex; align-items: center; justify-content: center; background: #eee; }
footer { margin-top: 32px; color: #777; font-size: 12px; }
"""

SCRIPT = """
(function () {
  "use strict";
  function key(td) {
    var v = td.getAttribute("data-v");
    if (v === null) { return td.textContent.toLowerCase(); }
    return v === "" ? null : parseFloat(v);
  }
  function sortBy(table, col, th) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var numeric = rows.length > 0 && rows[0].cells[col].hasAttribute("data-v");
    var now = th.getAttribute("aria-sort");
    var dir = now ? (now === "descending" ? 1 : -1) : (numeric ? -1 : 1);
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (x === null || y === null) { return (x === null) - (y === null); }
      return x < y ? -dir : x > y ? dir : 0;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.addEventListener("click", function () { sortBy(table, col, th); });
    });
  });
})();
"""
