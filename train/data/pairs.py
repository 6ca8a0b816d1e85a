"""Label-free training sequences cut from real footage, written in the GOT-10k layout the trainer reads.

Three kinds of sequence go into one folder (``<out>/train/``, with a ``list.txt`` of every complete one):

- ``still_*``: views of one real photo or video frame. A target box is placed on a textured region (gradient
  energy), and every view is an independent warp of the frame (shift, scale, aspect, small rotation) with its
  own colour, blur and noise, pasted look-alike distractors and sometimes a partial occluder. Any two views
  form a template/search pair, as the COCO branch of the official recipe cuts both from one image.
- ``track_*``: a box carried through real video by dense optical flow (Farneback), point by point with a
  forward-backward check; the track stops where the check fails, so it does not drift onto the background.
- ``synth_*``: sequences of the generator in :mod:`grm.train.data.synth`.

Boxes are xywh in pixels. Every sequence is a pure function of (seed, kind, index) and the footage, and
is written with ``meta_info.ini`` last, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from grm.runtime.atomic import atomic_write_text
from grm.runtime.errors import DatasetError
from grm.train.data.footage import IMAGE_SUFFIXES, VIDEO_SUFFIXES, media_files
from grm.train.data.sampler import MIN_LENGTH
from grm.train.data.synth import META_INFO, SequenceOrigin, SynthSequence, generate_sequence, write_sequence

Image = NDArray[np.uint8]
Flow = NDArray[np.float32]  # HxWx2 displacement (dx, dy) in pixels
MIN_TEXTURE = 6.0  # mean texture_map value (0..255 images) below which a region counts as flat


@dataclass(frozen=True, kw_only=True)
class PairSpec:
    """What :func:`write_pairs` writes.

    Attributes:
        stills / synth: number of still-view and generated sequences.
        views: frames per still sequence (the sampler needs at least 20).
        tracks_per_window / window: flow tracks started in each window of ``window`` video frames.
        still_every: every n-th video frame also joins the still pool.
        max_side: frames are shrunk so that their longer side is at most this many pixels.
        box_side: range of sqrt(w*h) of a placed box, as a fraction of the frame's shorter side.
        fb_threshold: largest forward-backward flow error (pixels) of a point that counts as tracked.
        min_tracked: fraction of a box's points that must pass the check to carry the box on.
    """

    stills: int = 600
    synth: int = 200
    views: int = 20
    tracks_per_window: int = 3
    window: int = 80
    still_every: int = 25
    max_side: int = 480
    box_side: tuple[float, float] = (0.06, 0.3)
    fb_threshold: float = 1.0
    min_tracked: float = 0.5
    jpeg_quality: int = 90


# ---------------------------------------------------------------------------------------------- box placement


def texture_map(gray: Image) -> NDArray[np.float32]:
    """Gradient energy per pixel (|d/dx| + |d/dy| of the lightly blurred image): high on textured regions."""
    smooth = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.0)
    return np.abs(cv2.Sobel(smooth, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(smooth, cv2.CV_32F, 0, 1))


def _box_means(integral: NDArray[np.float64], boxes: NDArray[np.int64]) -> NDArray[np.float64]:
    """Mean of the integrated map inside each integer xywh box (``integral`` from ``cv2.integral``)."""
    x1, y1, w, h = boxes.T
    x2, y2 = x1 + w, y1 + h
    total = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
    return total / np.maximum(w * h, 1)


def propose_box(
    score_map: NDArray[np.float32],
    rng: np.random.Generator,
    side: tuple[float, float] = (0.1, 0.35),
    candidates: int = 256,
    top_fraction: float = 0.1,
) -> NDArray[np.float64]:
    """A box (xywh, pixels) on a high-scoring region of ``score_map``, e.g. :func:`texture_map`.

    Random boxes of side sqrt(w*h) in ``side`` x the shorter image side and aspect in [1/2, 2], fully inside
    the image, are scored by their mean; one of the best ``top_fraction`` is returned.
    """
    h, w = score_map.shape[:2]
    short = min(h, w)
    sides = short * rng.uniform(side[0], side[1], candidates)
    aspect = np.exp(rng.uniform(-0.7, 0.7, candidates))
    bw = np.clip(sides * np.sqrt(aspect), 4, w - 1).astype(np.int64)
    bh = np.clip(sides / np.sqrt(aspect), 4, h - 1).astype(np.int64)
    x = (rng.random(candidates) * (w - bw)).astype(np.int64)
    y = (rng.random(candidates) * (h - bh)).astype(np.int64)
    boxes = np.stack([x, y, bw, bh], axis=1)
    scores = _box_means(cv2.integral(score_map.astype(np.float64)), boxes)
    best = np.argsort(-scores)[: max(1, int(candidates * top_fraction))]
    return boxes[int(rng.choice(best))].astype(np.float64)


# ---------------------------------------------------------------------------------------------- still views


def still_sequence(image: Image, rng: np.random.Generator, spec: PairSpec = PairSpec()) -> SynthSequence:
    """``spec.views`` independent views of one real image with the same target box carried through each."""
    box = propose_box(texture_map(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)), rng, spec.box_side)
    x, y, w, h = (int(v) for v in box)
    patch = image[y : y + h, x : x + w].copy()
    frames, boxes, visible = [], np.zeros((spec.views, 4)), np.ones(spec.views)
    for i in range(spec.views):
        frame, boxes[i] = _warp_view(image, box, rng)
        frame = frame.astype(np.float32)
        for _ in range(int(rng.integers(0, 3)) if rng.random() < 0.6 else 0):
            _paste_distractor(frame, patch, boxes[i], rng)
        if rng.random() < 0.15:
            visible[i] = _paste_occluder(frame, image, boxes[i], rng)
        frames.append(_photometric(frame, rng))
    return SynthSequence(frames=frames, boxes=boxes, visible_fraction=visible)


def _warp_view(image: Image, box: NDArray, rng: np.random.Generator) -> tuple[Image, NDArray]:
    """A random similarity warp (plus a little aspect change) that moves the box centre around the frame."""
    h, w = image.shape[:2]
    scale = float(np.exp(rng.uniform(-0.35, 0.35)))
    aspect = float(np.exp(rng.normal(0, 0.06)))
    sx, sy, angle = scale * aspect, scale / aspect, float(rng.normal(0, 0.06))
    centre = box[:2] + box[2:] / 2
    target = np.clip(centre + rng.normal(0, 0.12, 2) * (w, h), (0.1 * w, 0.1 * h), (0.9 * w, 0.9 * h))
    c, s = np.cos(angle), np.sin(angle)
    linear = np.array([[sx * c, -sy * s], [sx * s, sy * c]])
    matrix = np.hstack([linear, (target - linear @ centre)[:, None]])
    frame = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    size = box[2:] * (sx, sy)
    return frame, np.concatenate([target - size / 2, size])


def _soft_ellipse(h: int, w: int) -> NDArray[np.float32]:
    """An elliptical alpha mask with a feathered edge, so pasted patches show no rectangle border."""
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, h // 2), (max(1, w // 2 - 1), max(1, h // 2 - 1)), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), max(1.0, min(h, w) / 12))


def _blend(frame: NDArray[np.float32], patch: NDArray, x: int, y: int) -> NDArray[np.float32]:
    """Alpha-blend ``patch`` with a soft elliptical mask at (x, y), clipped to the frame; returns the alpha."""
    fh, fw = frame.shape[:2]
    ph, pw = patch.shape[:2]
    alpha_full = np.zeros((fh, fw), np.float32)
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + pw, fw), min(y + ph, fh)
    if x2 <= x1 or y2 <= y1:
        return alpha_full
    alpha = _soft_ellipse(ph, pw)[y1 - y : y2 - y, x1 - x : x2 - x, None]
    region = frame[y1:y2, x1:x2]
    region[:] = region * (1 - alpha) + patch[y1 - y : y2 - y, x1 - x : x2 - x].astype(np.float32) * alpha
    alpha_full[y1:y2, x1:x2] = alpha[..., 0]
    return alpha_full


def _overlap(a: NDArray, b: NDArray) -> float:
    """Intersection area of two xywh boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return float(max(w, 0) * max(h, 0))


def _paste_distractor(frame: NDArray[np.float32], patch: Image, box: NDArray, rng: np.random.Generator) -> None:
    """Paste a recoloured, rescaled copy of the target away from the target (a look-alike to reject)."""
    fh, fw = frame.shape[:2]
    size = np.maximum(box[2:] * np.exp(rng.normal(0, 0.2, 2)), 4).astype(int)
    copy = cv2.resize(patch, (int(size[0]), int(size[1])), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    copy = np.clip(copy * np.exp(rng.normal(0, 0.15, 3)).astype(np.float32), 0, 255)
    for _ in range(10):
        x, y = int(rng.integers(-size[0] // 3, fw - size[0] // 2)), int(rng.integers(-size[1] // 3, fh - size[1] // 2))
        if _overlap(np.array([x, y, size[0], size[1]]), box) == 0:
            _blend(frame, copy, x, y)
            return


def _paste_occluder(frame: NDArray[np.float32], source: Image, box: NDArray, rng: np.random.Generator) -> float:
    """Cover part of the target with a patch of another place of the image; returns the visible fraction."""
    sh, sw = source.shape[:2]
    ow = int(np.clip(box[2] * rng.uniform(0.3, 0.7), 4, sw - 1))
    oh = int(np.clip(box[3] * rng.uniform(0.3, 1.0), 4, sh - 1))
    sx, sy = int(rng.integers(0, sw - ow)), int(rng.integers(0, sh - oh))
    x = int(box[0] + rng.uniform(-0.3, 1.0) * box[2] - ow / 2)
    y = int(box[1] + rng.uniform(-0.3, 1.0) * box[3] - oh / 2)
    alpha = _blend(frame, source[sy : sy + oh, sx : sx + ow], x, y)
    bx, by = max(int(box[0]), 0), max(int(box[1]), 0)
    covered = alpha[by : int(box[1] + box[3]), bx : int(box[0] + box[2])]
    return float(np.clip(1.0 - covered.sum() / max(box[2] * box[3], 1.0), 0.0, 1.0))


def _photometric(frame: NDArray[np.float32], rng: np.random.Generator) -> Image:
    """Per-view colour gain, contrast, gamma, blur (Gaussian or motion) and sensor noise, on a 0..255 image."""
    mean = frame.mean()
    frame = (frame - mean) * float(np.exp(rng.normal(0, 0.15))) + mean + float(rng.normal(0, 10))
    frame = frame * np.exp(rng.normal(0, 0.08, 3)).astype(np.float32)
    frame = 255.0 * (np.clip(frame, 0, 255) / 255.0) ** float(np.exp(rng.normal(0, 0.15)))
    roll = rng.random()
    if roll < 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), float(rng.uniform(0.6, 2.0)))
    elif roll < 0.45:
        frame = cv2.filter2D(frame, -1, _motion_kernel(int(rng.integers(3, 12)), float(rng.uniform(0, 180))))
    if rng.random() < 0.5:
        frame = frame + rng.normal(0, rng.uniform(1, 8), frame.shape).astype(np.float32)
    return (np.clip(frame, 0, 255) + 0.5).astype(np.uint8)


def _motion_kernel(length: int, angle_deg: float) -> NDArray[np.float32]:
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return kernel / max(float(kernel.sum()), 1e-6)


# ---------------------------------------------------------------------------------------------- flow tracks


def dense_flows(grays: Sequence[Image]) -> tuple[list[Flow], list[Flow]]:
    """Forward (t -> t+1) and backward (t+1 -> t) Farneback optical flow of consecutive grayscale frames.

    Farneback with a small window (9 px, 4 pyramid levels) keeps small objects' motion: DIS, though faster,
    smooths a small target's flow toward its background's and a carried box then lags a few pixels a second.
    """

    def flow(a: Image, b: Image) -> Flow:
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 9, 3, 5, 1.1, 0)

    pairs = list(zip(grays[:-1], grays[1:], strict=True))
    return [flow(a, b) for a, b in pairs], [flow(b, a) for a, b in pairs]


def _sample(flow: Flow, points: NDArray[np.float32]) -> NDArray[np.float32]:
    """Bilinear flow at (x, y) points (N x 2), replicating the border."""
    xs, ys = points[:, 0].reshape(1, -1), points[:, 1].reshape(1, -1)
    out = cv2.remap(flow, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, 2)


def carry_box(
    grays: Sequence[Image],
    forward: Sequence[Flow],
    backward: Sequence[Flow],
    box: NDArray,
    fb_threshold: float = 1.0,
    min_tracked: float = 0.5,
    min_similarity: float = 0.5,
    grid: int = 10,
) -> NDArray[np.float64]:
    """Carry an xywh box through the frames the flows connect; returns one box per frame it was kept for.

    A grid of points inside the box moves with the forward flow; a point counts as tracked when the
    backward flow brings it back within ``fb_threshold`` pixels and it stays in the frame. The box moves by
    the median displacement and scales by the median change of point spacing (per frame, clamped to +-5 %).
    The track stops, before the failing frame, when fewer than ``min_tracked`` of the points are tracked,
    when fewer than half of the tracked points move with the median (within 5 % of the box side, at least
    1 pixel), when the box centre leaves the frame, or when the boxed content changes (normalised
    correlation of the old and new box contents under ``min_similarity``, or a new content without texture:
    flow is trivially consistent on a flat occluder).
    """
    height, width = forward[0].shape[:2] if forward else (0, 0)
    boxes = [np.asarray(box, dtype=np.float64)]
    for t, (fwd, bwd) in enumerate(zip(forward, backward, strict=True)):
        x, y, w, h = boxes[-1]
        u = (np.arange(grid) + 0.5) / grid
        gx, gy = np.meshgrid(x + w * (0.1 + 0.8 * u), y + h * (0.1 + 0.8 * u))
        points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
        moved = points + _sample(fwd, points)
        error = np.linalg.norm(moved + _sample(bwd, moved) - points, axis=1)
        inside = (moved[:, 0] >= 0) & (moved[:, 0] < width) & (moved[:, 1] >= 0) & (moved[:, 1] < height)
        ok = (error < fb_threshold) & inside
        if ok.mean() < min_tracked:
            break
        shift = np.median(moved[ok] - points[ok], axis=0)
        spread = np.linalg.norm(moved[ok] - points[ok] - shift, axis=1)
        if np.mean(spread <= max(1.0, 0.05 * float(np.sqrt(w * h)))) < 0.5:
            break  # the box holds parts that move apart (an object and its background): no single target
        scale = float(np.clip(_spacing_ratio(points[ok], moved[ok]), 0.95, 1.05))
        centre = np.array([x + w / 2, y + h / 2]) + shift
        if not (0 <= centre[0] < width and 0 <= centre[1] < height):
            break
        size = np.array([w, h]) * scale
        moved_box = np.concatenate([centre - size / 2, size])
        if _similarity(_patch(grays[t], boxes[-1]), _patch(grays[t + 1], moved_box)) < min_similarity:
            break
        boxes.append(moved_box)
    return np.stack(boxes)


def _patch(gray: Image, box: NDArray, size: int = 24) -> NDArray[np.float32]:
    """The box's content resampled to size x size pixels (float32; the border replicated)."""
    x, y, w, h = box
    matrix = np.float32([[w / size, 0, x], [0, h / size, y]])
    return cv2.warpAffine(
        gray.astype(np.float32),
        matrix,
        (size, size),
        flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _similarity(a: NDArray[np.float32], b: NDArray[np.float32], min_std: float = 2.0) -> float:
    """Normalised cross-correlation of two patches; 0 when either is flat (std under ``min_std`` grey levels)."""
    a, b = a - a.mean(), b - b.mean()
    if a.std() < min_std or b.std() < min_std:
        return 0.0
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def _spacing_ratio(before: NDArray, after: NDArray) -> float:
    """Median ratio of pairwise point distances after / before (the scale change of a rigid-ish patch)."""
    i, j = np.triu_indices(len(before), k=1)
    d0 = np.linalg.norm(before[i] - before[j], axis=1)
    keep = d0 > 2.0
    if not keep.any():
        return 1.0
    return float(np.median(np.linalg.norm(after[i] - after[j], axis=1)[keep] / d0[keep]))


def residual_motion(forward: Sequence[Flow]) -> NDArray[np.float32]:
    """Mean magnitude (pixels per frame) of the flow minus its median, i.e. motion other than the camera's."""
    if not forward:
        raise DatasetError("need at least two frames to measure motion")
    out = np.zeros(forward[0].shape[:2], np.float32)
    for flow in forward:
        out += np.linalg.norm(flow - np.median(flow.reshape(-1, 2), axis=0), axis=2)
    return out / len(forward)


def moving_boxes(motion: NDArray[np.float32], min_side: float, threshold: float = 1.0) -> list[NDArray[np.float64]]:
    """Bounding boxes (xywh) of the connected regions moving faster than ``threshold`` pixels per frame.

    Regions smaller than ``min_side`` on a side or wider than half the frame are left out: they are noise
    or the camera's own motion.
    """
    mask = cv2.morphologyEx((motion > threshold).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    h, w = motion.shape
    boxes = []
    for x, y, bw, bh, _ in stats[1:count]:
        if min(bw, bh) >= min_side and bw <= w / 2 and bh <= h / 2:
            boxes.append(np.array([x, y, bw, bh], dtype=np.float64))
    return boxes


def track_sequences(
    frames: Sequence[Image], rng: np.random.Generator, spec: PairSpec = PairSpec()
) -> list[SynthSequence]:
    """Up to ``spec.tracks_per_window`` flow tracks of at least 20 frames started on the first of ``frames``.

    Start boxes are first the regions that move against the camera (:func:`moving_boxes` over the first five
    frames), then textured regions, favouring those that move; none overlaps an accepted track's start box
    by more than a third of its area.
    """
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    forward, backward = dense_flows(grays)
    motion = residual_motion(forward[:5])
    texture = texture_map(grays[0])
    score = texture * (0.25 + motion / max(float(motion.max()), 1e-3))
    texture_sums = cv2.integral(texture.astype(np.float64))
    blobs = moving_boxes(motion, min_side=12.0)
    blobs = [blobs[i] for i in rng.permutation(len(blobs))]
    out, starts = [], []
    for attempt in range(4 * spec.tracks_per_window):
        if len(out) == spec.tracks_per_window:
            break
        box = blobs[attempt] if attempt < len(blobs) else propose_box(score, rng, spec.box_side)
        if _box_means(texture_sums, box[None].astype(np.int64))[0] < MIN_TEXTURE:
            continue  # flat (a dark fade, sky): flow is trivially consistent there and tracks nothing
        if any(_overlap(box, s) > box[2] * box[3] / 3 for s in starts):
            continue
        boxes = carry_box(grays, forward, backward, box, spec.fb_threshold, spec.min_tracked)
        if len(boxes) >= MIN_LENGTH:
            starts.append(box)
            out.append(
                SynthSequence(frames=list(frames[: len(boxes)]), boxes=boxes, visible_fraction=np.ones(len(boxes)))
            )
    return out


# ---------------------------------------------------------------------------------------------- footage I/O


def shrink(image: Image, max_side: int) -> Image:
    """The image scaled down (area filter) so that its longer side is at most ``max_side`` pixels."""
    h, w = image.shape[:2]
    factor = max_side / max(h, w)
    if factor >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)


def read_video(path: Path, max_side: int) -> Iterator[Image]:
    """RGB frames of a video file, shrunk to ``max_side``; an unreadable file is a :class:`DatasetError`."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DatasetError(f"cannot open video {path}; fetch the footage again")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield shrink(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), max_side)
    finally:
        capture.release()


def video_windows(path: Path, length: int, max_side: int) -> Iterator[list[Image]]:
    """Consecutive windows of ``length`` frames (the last one shorter, dropped when under 20 frames)."""
    window: list[Image] = []
    for frame in read_video(path, max_side):
        window.append(frame)
        if len(window) == length:
            yield window
            window = []
    if len(window) >= MIN_LENGTH:
        yield window


def still_pool(footage: Path, spec: PairSpec) -> list[Image]:
    """Every footage photo and every ``still_every``-th video frame, RGB, shrunk to ``spec.max_side``."""
    pool = []
    for path in media_files(footage, IMAGE_SUFFIXES):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"cannot read image {path}; fetch the footage again")
        pool.append(shrink(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), spec.max_side))
    for path in media_files(footage, VIDEO_SUFFIXES):
        pool.extend(f for i, f in enumerate(read_video(path, spec.max_side)) if i % spec.still_every == 0)
    return pool


# ---------------------------------------------------------------------------------------------- the dataset


_KIND_SEED = {"still": 1, "track": 2, "synth": 3}
_STILL_ORIGIN = SequenceOrigin(
    url="views of one real photo, grm-train build-pairs",
    object_class="textured image region",
    motion_class="random shift and scale",
    major_class="real still",
)


def write_pairs(
    footage: str | Path,
    output: str | Path,
    spec: PairSpec = PairSpec(),
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write still, track and synth sequences under ``<output>/train/`` and its ``list.txt``; returns that folder.

    Complete sequences (their ``meta_info.ini`` exists) and finished video windows (a marker in
    ``.windows/``) are kept, so the same command resumes an interrupted run.
    """
    root = Path(output) / "train"
    root.mkdir(parents=True, exist_ok=True)
    footage = Path(footage)
    _write_stills(footage, root, spec, seed, progress)
    _write_tracks(footage, root, spec, seed, progress)
    for i in range(spec.synth):
        folder = root / f"synth_{i + 1:06d}"
        if not (folder / META_INFO).is_file():
            write_sequence(generate_sequence(seed, i), folder, spec.jpeg_quality)
        _tick(progress, "synth")
    names = sorted(p.name for p in root.iterdir() if (p / META_INFO).is_file())
    if not names:
        raise DatasetError(f"no sequences were written to {root}; ask for --stills, --synth or give video footage")
    atomic_write_text(root / "list.txt", "".join(f"{n}\n" for n in names))
    return root


def _tick(progress: Callable[[str], None] | None, kind: str) -> None:
    if progress is not None:
        progress(kind)


def _write_stills(footage: Path, root: Path, spec: PairSpec, seed: int, progress: Callable[[str], None] | None) -> None:
    todo = {i for i in range(spec.stills) if not (root / f"still_{i + 1:06d}" / META_INFO).is_file()}
    if not todo:
        return
    pool = still_pool(footage, spec)
    if not pool:
        raise DatasetError(f"{footage} holds no images or videos for still sequences")
    order = np.random.default_rng([seed, 0]).permutation(len(pool))
    for i in range(spec.stills):
        if i in todo:
            rng = np.random.default_rng([seed, _KIND_SEED["still"], i])
            sequence = still_sequence(pool[int(order[i % len(pool)])], rng, spec)
            write_sequence(sequence, root / f"still_{i + 1:06d}", spec.jpeg_quality, _STILL_ORIGIN)
        _tick(progress, "still")


def _write_tracks(footage: Path, root: Path, spec: PairSpec, seed: int, progress: Callable[[str], None] | None) -> None:
    if spec.tracks_per_window < 1:
        return
    markers = root / ".windows"
    markers.mkdir(exist_ok=True)
    for v, path in enumerate(media_files(footage, VIDEO_SUFFIXES)):
        for w, frames in enumerate(video_windows(path, spec.window, spec.max_side)):
            marker = markers / f"{v:03d}_{w:04d}.done"
            if not marker.is_file():
                rng = np.random.default_rng([seed, _KIND_SEED["track"], v, w])
                origin = SequenceOrigin(
                    url=f"optical-flow track in {path.name}, grm-train build-pairs",
                    object_class="moving video region",
                    motion_class="dense optical flow",
                    major_class="real video",
                )
                for k, sequence in enumerate(track_sequences(frames, rng, spec)):
                    write_sequence(sequence, root / f"track_{v:03d}_{w:04d}_{k}", spec.jpeg_quality, origin)
                atomic_write_text(marker, path.name + "\n")
            _tick(progress, "track")
