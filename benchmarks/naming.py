"""Matching result-file names to sequence names across toolkits.

Toolkits spell the same sequence differently: ``Jogging_1`` (PyTracking), ``jogging-1`` (OTB toolkit),
``Human4.2``, ``carDark`` vs ``CarDark``, ``uav_bike1`` vs ``bike1``. A name key lower-cases the name and
treats ``-``, ``.``, ``_`` and spaces alike; other characters are kept, so ``car1_1`` and ``car11`` (two
different UAV123 sequences) stay apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from grm.runtime.errors import InputError

_SEPARATORS = re.compile(r"[-._\s]+")
TIME_SUFFIX = "_time"


def name_key(name: str) -> str:
    """Case- and separator-insensitive key of a sequence or file name."""
    return _SEPARATORS.sub("_", name.strip().lower())


def result_files(folder: Path) -> dict[str, Path]:
    """Result files of a folder by name key; timing files and ``all_boxes`` files are left out.

    Raises :class:`InputError` when two files map to the same key (e.g. ``Jogging-1.txt`` and ``jogging_1.txt``).
    """
    files: dict[str, Path] = {}
    for path in sorted(folder.glob("*.txt")):
        stem = path.stem
        if stem.endswith(TIME_SUFFIX) or "all_boxes" in stem or stem.startswith("."):
            continue
        key = name_key(stem)
        if key in files:
            raise InputError(f"{folder}: {files[key].name} and {path.name} name the same sequence; remove one")
        files[key] = path
    return files


def find_result(files: dict[str, Path], name: str, aliases: Iterable[str] = ()) -> Path | None:
    """The result file for a sequence: its own name first, then its aliases, all by name key."""
    for candidate in (name, *aliases):
        path = files.get(name_key(candidate))
        if path is not None:
            return path
    return None
