"""Split lists shipped with the package (``grm/train/splits/*.txt``).

- ``lasot_train_split.txt``: the 1120 LaSOT training videos, i.e. for each of the 70 classes the 16 videos
  of 20 that are not in LaSOT's fixed 280-video test list (the protocol's definition; same names and
  order as the list the official code ships).
- ``got10k_vot_train_split.txt``: the 7086 GOT-10k train indices (into ``list.txt`` order) of the official
  ``GOT10K_vot_train`` split, in the published order (checked: 7086 unique values in 0..9334).
- The official ``got10k_train_split.txt`` lists every index 0..9334, so ``GOT10K_train`` needs no file: it
  is every sequence of ``list.txt``.
"""

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
