"""Synthetic tracking sequences written in the GOT-10k on-disk layout, for tests and the demo model.

Each sequence shows one textured target on a textured, slowly panning background. The target moves on a
smooth random path, changes scale and aspect, meets look-alike distractors, and is sometimes hidden by
occluders or leaves the frame. Everything is a pure function of ``(seed, sequence index)``.

Layout (as GOT-10k ``train/`` and ``val/``, complete enough for the official GOT-10k toolkit to read):
``<out>/<subset>/list.txt`` and, per sequence, ``%08d.jpg`` frames (1-based), ``groundtruth.txt``
(x,y,w,h per frame, pixels), ``absence.label`` (1 = target not visible), ``cover.label`` (visible fraction
binned 0..8 as GOT-10k), ``cut_by_image.label`` (1 = the box reaches past the image border) and
``meta_info.ini`` (``resolution: (width, height)`` of the frames, which GOT-10k scoring clips boxes to).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.runtime.atomic import atomic_write_text
from grm.runtime.errors import InputError

Image = NDArray[np.uint8]
# GOT-10k cover.label bins: 0 = fully hidden, 8 = fully visible, 1..7 = (0,15], (15,30], ... (90,100) %.
_COVER_EDGES = np.array([0.0, 0.15, 0.30, 0.45, 0.60, 0.75, 0.90, 1.0 - 1e-9])


@dataclass(frozen=True, kw_only=True)
class SynthSpec:
    """Shape of the generated data.

    Attributes:
        min_frames / max_frames: sequence length range (inclusive).
        min_size / max_size: frame width range in pixels; height is 0.6-0.9 of the width.
        min_target / max_target: initial sqrt(w*h) of the target, pixels.
        jpeg_quality: quality of the written JPEG frames.
    """

    min_frames: int = 60
    max_frames: int = 120
    min_size: int = 256
    max_size: int = 400
    min_target: float = 22.0
    max_target: float = 64.0
    jpeg_quality: int = 92


@dataclass(frozen=True)
class Sprite:
    """A textured object: RGB texture and soft alpha, both at the object's base size."""

    texture: NDArray[np.float32]
    alpha: NDArray[np.float32]


@dataclass(frozen=True)
class SynthSequence:
    """One generated sequence in memory: RGB frames and per-frame labels."""

    frames: list[Image]
    boxes: NDArray[np.float64]
    visible_fraction: NDArray[np.float64]

    @property
    def absence(self) -> NDArray[np.int64]:
        return (self.visible_fraction <= 0).astype(np.int64)

    @property
    def cover(self) -> NDArray[np.int64]:
        return cover_bins(self.visible_fraction)

    @property
    def resolution(self) -> tuple[int, int]:
        """(width, height) of the frames in pixels."""
        height, width = self.frames[0].shape[:2]
        return int(width), int(height)

    @property
    def cut_by_image(self) -> NDArray[np.int64]:
        """1 where the box (xywh) reaches past an image border, as GOT-10k's ``cut_by_image.label``."""
        width, height = self.resolution
        b = self.boxes
        cut = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 0] + b[:, 2] > width) | (b[:, 1] + b[:, 3] > height)
        return cut.astype(np.int64)


def cover_bins(visible_fraction: NDArray[np.float64]) -> NDArray[np.int64]:
    """GOT-10k cover level 0..8 from the visible fraction of the target."""
    v = np.asarray(visible_fraction, dtype=np.float64)
    bins = np.searchsorted(_COVER_EDGES, v, side="left").astype(np.int64)
    return np.where(v <= 0, 0, np.minimum(bins, 8))


def _noise_texture(rng: np.random.Generator, h: int, w: int, octaves: int = 4) -> NDArray[np.float32]:
    """Multi-octave coloured value noise in [0, 1], HxWx3."""
    out = np.zeros((h, w, 3), np.float32)
    total = 0.0
    for o in range(octaves):
        cells = 2 + 3 * 2**o
        amp = 0.55**o
        grid = rng.random((cells, max(2, cells * w // max(h, 1)), 3)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
    out /= total
    lo, hi = out.min(), out.max()
    return (out - lo) / max(hi - lo, 1e-6)


def _background(rng: np.random.Generator, h: int, w: int) -> NDArray[np.float32]:
    """Natural-looking clutter: low-contrast noise, a colour gradient and random shapes."""
    base = 0.35 + 0.4 * _noise_texture(rng, h, w)
    tint = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    ramp = np.linspace(0.85, 1.1, w, dtype=np.float32)[None, :, None]
    img = np.clip(base * tint * ramp, 0, 1)
    for _ in range(int(rng.integers(6, 18))):
        colour = tuple(float(c) for c in rng.uniform(0.15, 0.85, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(4, max(6, w // 8)))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), size, colour, -1, lineType=cv2.LINE_AA)
        else:
            x2, y2 = x + int(rng.integers(-3 * size, 3 * size)), y + int(rng.integers(-size, size))
            cv2.line(img, (x, y), (x2, y2), colour, int(rng.integers(1, 4)), lineType=cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), 0.8)


def make_sprite(rng: np.random.Generator, size: int = 64, hue: float | None = None) -> Sprite:
    """A saturated, patterned object (stripes, checks or blobs) with an ellipse or rounded-box outline."""
    hue = float(rng.uniform(0, 180)) if hue is None else hue % 180
    hsv = np.zeros((size, size, 3), np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    kind = int(rng.integers(0, 3))
    freq = float(rng.uniform(2.0, 5.0))
    if kind == 0:
        angle = rng.uniform(0, np.pi)
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy))
    elif kind == 1:
        pattern = ((np.floor(xx * freq) + np.floor(yy * freq)) % 2).astype(np.float32)
    else:
        pattern = _noise_texture(rng, size, size, octaves=2)[..., 0]
    hsv[..., 0] = (hue + 25 * pattern) % 180
    hsv[..., 1] = 0.55 + 0.4 * pattern
    hsv[..., 2] = 0.45 + 0.5 * (1 - pattern) * float(rng.uniform(0.6, 1.0))
    rgb = cv2.cvtColor(np.dstack([hsv[..., 0] * 2, hsv[..., 1], hsv[..., 2]]), cv2.COLOR_HSV2RGB)
    alpha = np.zeros((size, size), np.float32)
    if rng.random() < 0.5:
        cv2.ellipse(alpha, (size // 2, size // 2), (size // 2 - 1, size // 2 - 1), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    else:
        r = size // 5
        cv2.rectangle(alpha, (r, 0), (size - 1 - r, size - 1), 1.0, -1)
        cv2.rectangle(alpha, (0, r), (size - 1, size - 1 - r), 1.0, -1)
        for cx, cy in ((r, r), (size - 1 - r, r), (r, size - 1 - r), (size - 1 - r, size - 1 - r)):
            cv2.circle(alpha, (cx, cy), r, 1.0, -1, cv2.LINE_AA)
    return Sprite(texture=rgb.astype(np.float32), alpha=alpha)


def _smooth_path(rng: np.random.Generator, n: int, start: float, lo: float, hi: float, speed: float) -> NDArray:
    """1-D smooth random walk bouncing inside [lo, hi]; ``speed`` in units per frame."""
    vel = rng.normal(0, speed)
    pos = np.empty(n)
    p = start
    for i in range(n):
        vel = 0.9 * vel + rng.normal(0, speed * 0.35)
        p += vel
        if p < lo or p > hi:
            vel = -vel
            p = min(max(p, lo), hi)
        pos[i] = p
    return pos


@dataclass(frozen=True)
class _Track:
    """Per-frame centre (x, y) and size (w, h) of one moving object, in pixels."""

    cx: NDArray
    cy: NDArray
    w: NDArray
    h: NDArray


def _object_track(rng: np.random.Generator, n: int, w: int, h: int, side: float, margin: float) -> _Track:
    aspect = float(np.exp(rng.uniform(-0.6, 0.6)))
    log_scale = np.clip(_smooth_path(rng, n, 0.0, -0.5, 0.6, 0.012), -0.5, 0.6)
    ar = aspect * np.exp(_smooth_path(rng, n, 0.0, -0.15, 0.15, 0.004))
    bw, bh = side * np.exp(log_scale) * np.sqrt(ar), side * np.exp(log_scale) / np.sqrt(ar)
    speed = float(rng.uniform(0.6, 2.8)) * side / 40
    cx = _smooth_path(rng, n, float(rng.uniform(0.25, 0.75) * w), -margin, w + margin, speed)
    cy = _smooth_path(rng, n, float(rng.uniform(0.25, 0.75) * h), -margin, h + margin, speed)
    return _Track(cx, cy, bw, bh)


def _paste(
    canvas: NDArray[np.float32], sprite: Sprite, cx: float, cy: float, bw: float, bh: float, shade: float = 1.0
) -> NDArray[np.float32]:
    """Alpha-blend the sprite resized to (bw, bh) at centre (cx, cy); returns its full-frame alpha (HxW)."""
    h, w = canvas.shape[:2]
    full = np.zeros((h, w), np.float32)
    x1, y1 = int(round(cx - bw / 2)), int(round(cy - bh / 2))
    sw, sh = max(1, int(round(bw))), max(1, int(round(bh)))
    ox1, oy1, ox2, oy2 = max(x1, 0), max(y1, 0), min(x1 + sw, w), min(y1 + sh, h)
    if ox2 <= ox1 or oy2 <= oy1:
        return full
    tex = cv2.resize(sprite.texture, (sw, sh), interpolation=cv2.INTER_LINEAR)[oy1 - y1 : oy2 - y1, ox1 - x1 : ox2 - x1]
    alpha = cv2.resize(sprite.alpha, (sw, sh), interpolation=cv2.INTER_LINEAR)[oy1 - y1 : oy2 - y1, ox1 - x1 : ox2 - x1]
    region = canvas[oy1:oy2, ox1:ox2]
    region[:] = region * (1 - alpha[..., None]) + tex * shade * alpha[..., None]
    full[oy1:oy2, ox1:ox2] = alpha
    return full


def generate_sequence(seed: int, index: int, spec: SynthSpec = SynthSpec()) -> SynthSequence:
    """Render sequence ``index`` of the family ``seed`` (deterministic)."""
    rng = np.random.default_rng([seed, index])
    n = int(rng.integers(spec.min_frames, spec.max_frames + 1))
    w = int(rng.integers(spec.min_size, spec.max_size + 1)) // 2 * 2
    h = int(w * rng.uniform(0.6, 0.9)) // 2 * 2
    side = float(rng.uniform(spec.min_target, spec.max_target))
    pan = 24
    world = _background(rng, h + 2 * pan, w + 2 * pan)
    pan_x = np.clip(_smooth_path(rng, n, 0, -pan, pan, 0.4), -pan, pan)
    pan_y = np.clip(_smooth_path(rng, n, 0, -pan, pan, 0.3), -pan, pan)
    target = make_sprite(rng)
    track = _object_track(rng, n, w, h, side, margin=0.3 * side if rng.random() < 0.3 else -0.5 * side)
    hue = float(cv2.cvtColor(target.texture[:1, :1], cv2.COLOR_RGB2HSV)[0, 0, 0]) / 2
    distractors = [
        (
            make_sprite(rng, hue=hue + rng.uniform(-25, 25)) if rng.random() < 0.6 else make_sprite(rng),
            _object_track(rng, n, w, h, side * rng.uniform(0.7, 1.3), -0.3 * side),
            rng.random() < 0.3,
        )
        for _ in range(int(rng.integers(0, 4)))
    ]
    occluders = _occluder_tracks(rng, n, w, h, side)
    frames, boxes, vis = [], np.zeros((n, 4)), np.zeros(n)
    shade = 1 + 0.15 * np.sin(np.linspace(0, rng.uniform(1, 6), n) + rng.uniform(0, 6))
    for t in range(n):
        px, py = pan + int(round(pan_x[t])), pan + int(round(pan_y[t]))
        canvas = world[py : py + h, px : px + w].copy() * float(shade[t])
        for sprite, tr, front in distractors:
            if not front:
                _paste(canvas, sprite, tr.cx[t], tr.cy[t], tr.w[t], tr.h[t])
        alpha = _paste(canvas, target, track.cx[t], track.cy[t], track.w[t], track.h[t], shade=float(shade[t]))
        hidden = np.zeros_like(alpha)
        for sprite, tr, front in distractors:
            if front:
                hidden = np.maximum(hidden, _paste(canvas, sprite, tr.cx[t], tr.cy[t], tr.w[t], tr.h[t]))
        for occ in occluders:
            hidden = np.maximum(hidden, _draw_occluder(canvas, occ, t))
        full_area = float(track.w[t] * track.h[t]) * float(target.alpha.mean())
        vis[t] = float((alpha * (1 - hidden)).sum()) / max(full_area, 1e-6) if full_area > 0 else 0.0
        boxes[t] = (track.cx[t] - track.w[t] / 2, track.cy[t] - track.h[t] / 2, track.w[t], track.h[t])
        noise = rng.normal(0, 0.015, canvas.shape).astype(np.float32)
        frames.append((np.clip(canvas + noise, 0, 1) * 255 + 0.5).astype(np.uint8))
    vis = np.clip(vis, 0, 1)
    vis[vis < 0.02] = 0.0
    vis[vis > 0.97] = 1.0  # resampling of the soft outline makes a whole target read as 97-100 %
    return SynthSequence(frames=frames, boxes=boxes, visible_fraction=vis)


@dataclass(frozen=True)
class _Occluder:
    """A bar that crosses the frame during [start, start + duration)."""

    start: int
    duration: int
    x0: float
    y0: float
    vx: float
    vy: float
    w: float
    h: float
    colour: tuple[float, float, float]


def _occluder_tracks(rng: np.random.Generator, n: int, w: int, h: int, side: float) -> list[_Occluder]:
    occluders = []
    for _ in range(int(rng.integers(0, 3))):
        duration = int(rng.integers(10, max(11, n // 2)))
        vertical = rng.random() < 0.5
        ow, oh = (side * rng.uniform(0.6, 1.6), h * 1.2) if vertical else (w * 1.2, side * rng.uniform(0.6, 1.6))
        speed = (w if vertical else h) / duration * rng.choice([-1, 1])
        x0 = (0.0 if speed > 0 else float(w)) if vertical else w / 2
        y0 = h / 2 if vertical else (0.0 if speed > 0 else float(h))
        occluders.append(
            _Occluder(
                int(rng.integers(0, max(1, n - duration))),
                duration,
                x0,
                y0,
                speed if vertical else 0.0,
                0.0 if vertical else speed,
                ow,
                oh,
                tuple(float(c) for c in rng.uniform(0.1, 0.9, 3)),
            )
        )
    return occluders


def _draw_occluder(canvas: NDArray[np.float32], occ: _Occluder, t: int) -> NDArray[np.float32]:
    mask = np.zeros(canvas.shape[:2], np.float32)
    if not occ.start <= t < occ.start + occ.duration:
        return mask
    k = t - occ.start
    cx, cy = occ.x0 + occ.vx * k, occ.y0 + occ.vy * k
    p1 = (int(cx - occ.w / 2), int(cy - occ.h / 2))
    p2 = (int(cx + occ.w / 2), int(cy + occ.h / 2))
    cv2.rectangle(mask, p1, p2, 1.0, -1)
    canvas[mask > 0] = occ.colour
    return mask


META_INFO = "meta_info.ini"


def write_sequence(
    seq: SynthSequence, directory: Path, jpeg_quality: int = 92, origin: SequenceOrigin | None = None
) -> None:
    """Write one sequence's frames and label files into ``directory`` (GOT-10k per-sequence layout).

    ``meta_info.ini`` is written last, so its presence marks a complete sequence; ``origin`` says where
    its frames came from (default: this generator).
    """
    directory.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    for i, frame in enumerate(seq.frames):
        cv2.imwrite(str(directory / f"{i + 1:08d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
    _write_text(
        directory / "groundtruth.txt", "".join(f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}\n" for x, y, w, h in seq.boxes)
    )
    _write_text(directory / "absence.label", "".join(f"{v}\n" for v in seq.absence))
    _write_text(directory / "cover.label", "".join(f"{v}\n" for v in seq.cover))
    _write_text(directory / "cut_by_image.label", "".join(f"{v}\n" for v in seq.cut_by_image))
    _write_text(directory / META_INFO, meta_info(seq.resolution, origin or SequenceOrigin()))


@dataclass(frozen=True)
class SequenceOrigin:
    """Where a written sequence's frames and boxes came from, for its ``meta_info.ini``."""

    url: str = "generated by grm-train synth"
    object_class: str = "synthetic object"
    motion_class: str = "random path"
    major_class: str = "synthetic"


def meta_info(resolution: tuple[int, int], origin: SequenceOrigin = SequenceOrigin()) -> str:
    """A GOT-10k ``meta_info.ini``: a section line, then ``key: value`` lines (the toolkit splits on ``': '``)."""
    width, height = resolution
    fields = {
        "url": origin.url,
        "begin_time": "00:00:00.000",
        "anno_fps": "10Hz",
        "object_class": origin.object_class,
        "motion_class": origin.motion_class,
        "major_class": origin.major_class,
        "root_class": "object",
        "motion_adverb": "smoothly",
        "resolution": f"({width}, {height})",
    }
    return "[METAINFO]\n" + "".join(f"{key}: {value}\n" for key, value in fields.items())


def _write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def write_dataset(
    output: str | Path,
    sequences: int,
    seed: int = 0,
    subset: str = "train",
    spec: SynthSpec = SynthSpec(),
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Generate ``sequences`` sequences under ``<output>/<subset>/`` with a GOT-10k ``list.txt``.

    Already complete sequences (their ``meta_info.ini``, written last, exists) are kept, so an interrupted
    run resumes.
    Returns the subset folder (the GOT-10k root for the dataset readers).
    """
    if sequences < 1:
        raise InputError(f"--sequences must be at least 1, got {sequences}")
    root = Path(output) / subset
    root.mkdir(parents=True, exist_ok=True)
    names = [f"GOT-10k_{subset.capitalize()}_{i + 1:06d}" for i in range(sequences)]
    for i, name in enumerate(names):
        if not (root / name / META_INFO).is_file():
            write_sequence(generate_sequence(seed, i, spec), root / name, spec.jpeg_quality)
        if progress is not None:
            progress(1)
    _write_text(root / "list.txt", "".join(f"{name}\n" for name in names))
    return root
