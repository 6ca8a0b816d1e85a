"""Sequence metadata tables shipped as package data (``grm/benchmarks/data/*.txt``, ``attributes.json``).

The tables are facts about the official datasets (name lists, frame ranges, start frames, file patterns);
they live in data files so they can be checked and updated without touching code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


def _lines(name: str) -> list[str]:
    text = resources.files("grm.benchmarks").joinpath("data", name).read_text()
    return [line for line in (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]


@dataclass(frozen=True)
class RangeEntry:
    """One sequence cut from a video by frame range (1-based, inclusive frame-file numbers)."""

    name: str
    video: str
    start: int
    end: int
    object_class: str


@dataclass(frozen=True)
class OtbEntry:
    """One OTB-100 sequence: where its frames and annotation are, and its quirks."""

    name: str
    video: str
    start: int
    end: int
    digits: int
    ext: str
    anno_file: str
    omit: int
    object_class: str


@cache
def uav_table(name: str) -> tuple[RangeEntry, ...]:
    """``uav123.txt`` or ``uav20l.txt``: annotation name, video folder, first and last frame, class."""
    rows = []
    for line in _lines(name):
        anno, video, start, end, cls = line.split()
        rows.append(RangeEntry(anno, video, int(start), int(end), cls))
    return tuple(rows)


@cache
def name_list(name: str) -> tuple[str, ...]:
    """A whitespace-separated list of sequence names (``lasot.txt``, ``lasot_ext.txt``, ``avist.txt``)."""
    return tuple(word for line in _lines(name) for word in line.split())


@cache
def nfs_table() -> tuple[RangeEntry, ...]:
    """NfS 30 fps sequences: name, last frame, class (frames start at 1)."""
    rows = []
    for line in _lines("nfs.txt"):
        name, end, cls, _occlusion = line.split()
        rows.append(RangeEntry(name, name, 1, int(end), cls.replace("_", " ")))
    return tuple(rows)


@cache
def otb_table() -> tuple[OtbEntry, ...]:
    """OTB-100 sequences with start frames, digit counts, extensions, annotation files and omitted frames."""
    rows = []
    for line in _lines("otb.txt"):
        name, video, start, end, digits, ext, anno, omit, cls = line.split("|")
        rows.append(OtbEntry(name, video, int(start), int(end), int(digits), ext, anno, int(omit), cls))
    return tuple(rows)


@cache
def attribute_names(dataset: str) -> dict[str, Any]:
    """Short and long attribute names, in the column order of that dataset's attribute files."""
    text = resources.files("grm.benchmarks").joinpath("data", "attributes.json").read_text()
    return json.loads(text)[dataset]
