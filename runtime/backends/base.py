"""The interface every inference backend offers to the tracker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from grm.runtime.params import ModelMetadata


@runtime_checkable
class Backend(Protocol):
    """Runs the GRM network on one template/search pair.

    ``run`` takes the contract's inputs (see :mod:`grm.runtime.contract`) as numpy arrays and returns at
    least ``score_map``, ``size_map`` and ``offset_map`` as float32 numpy arrays.
    """

    metadata: ModelMetadata
    name: str

    def run(self, inputs: Mapping[str, NDArray[np.float32]]) -> dict[str, NDArray[np.float32]]: ...

    def close(self) -> None: ...
