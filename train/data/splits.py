"""Split lists shipped with the package (``grm/train/splits/*.txt``)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from grm.runtime.errors import DatasetError


def _read(name: str) -> list[str]:
    try:
        text = resources.files("grm.train").joinpath("splits", name).read_text()
    except FileNotFoundError as e:
        raise DatasetError(f"split list {name} is missing from the installed package; reinstall grm-tracker") from e
    return [line.strip() for line in text.splitlines() if line.strip()]


@lru_cache(maxsize=8)
def read_name_split(name: str) -> tuple[str, ...]:
    """Sequence names, one per line (LaSOT)."""
    return tuple(_read(name))


@lru_cache(maxsize=8)
def read_index_split(name: str) -> list[int]:
    """Integer sequence indices, one per line (GOT-10k, indices into ``list.txt``)."""
    return [int(v) for v in _read(name)]
