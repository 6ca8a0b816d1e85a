"""Reading and writing the plain-text files of tracking benchmarks.

Ground truth and result files hold one ``x,y,w,h`` row per frame (xywh, pixels). Toolkits disagree on the
separator (comma, tab, space, semicolon, even mixed within one OTB file) and on the number format (the
official GRM runner truncated to integers), so the reader accepts all of them. Files are written
atomically (:mod:`grm.runtime.atomic`), so a killed run never leaves a half-written result behind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from grm.runtime.errors import InputError

_SEPARATORS = re.compile(r"[,;\s]+")


def _parse_line(line: str, path: Path, lineno: int) -> list[float]:
    try:
        return [float(v) for v in _SEPARATORS.split(line.strip().strip(",;")) if v]
    except ValueError as e:
        raise InputError(f"{path}:{lineno}: cannot read numbers from {line.strip()!r}") from e


def read_rows(path: str | Path) -> list[tuple[int, list[float]]]:
    """(line number, numbers) per non-empty line (comma, tab, space or semicolon separated); NaN kept.

    Rows may differ in length; callers check the count they need.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read box file {path}: {getattr(e, 'strerror', None) or e}") from e
    lines = enumerate(text.splitlines(), start=1)
    return [(lineno, _parse_line(line, path, lineno)) for lineno, line in lines if line.strip()]


def read_boxes(path: str | Path, columns: int = 4) -> NDArray[np.float64]:
    """Read one box per non-empty line (any of the separators above); shape (N, columns).

    ``NaN`` entries are kept (UAV123 marks absent targets with NaN rows).
    """
    rows = read_rows(path)
    for lineno, values in rows:
        if len(values) != columns:
            raise InputError(f"{path}:{lineno}: expected {columns} values (x,y,w,h), found {len(values)}")
    return np.asarray([values for _, values in rows], dtype=np.float64).reshape(-1, columns)


def read_flags(path: str | Path) -> NDArray[np.float64]:
    """Read per-frame flags or values written on one line or one per line (LaSOT occlusion, GOT-10k labels)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"cannot read flag file {path}: {e.strerror or e}") from e
    values = [v for v in _SEPARATORS.split(text.strip()) if v]
    try:
        return np.asarray([float(v) for v in values], dtype=np.float64)
    except ValueError as e:
        raise InputError(f"{path}: flags must be numbers: {e}") from e


def format_boxes(boxes: Iterable[Iterable[float]], decimals: int = 4) -> str:
    """Comma-separated rows, one per frame, with ``decimals`` digits (floats, not truncated)."""
    return "".join(",".join(f"{float(v):.{decimals}f}" for v in box) + "\n" for box in boxes)


def format_ints(boxes: NDArray[np.float64]) -> str:
    """Comma-separated integer rows, truncated toward zero as the evaluation servers expect."""
    return "".join(",".join(str(int(v)) for v in box) + "\n" for box in np.asarray(boxes).astype(np.int64))
