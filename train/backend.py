"""PyTorch checkpoint backend for the runtime tracker (development use; found via the ``grm.backends`` entry point)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from grm.runtime import contract
from grm.runtime.atomic import sha256_file
from grm.runtime.params import ModelMetadata
from grm.runtime.version import __version__
from grm.train.checkpoint import load_checkpoint
from grm.train.config import GrmConfig
from grm.train.model import GRM


class TorchBackend:
    """Runs a :class:`GRM` in eval mode, float32, no autocast, on numpy inputs.

    Args:
        model: the network (put into eval mode here).
        device: torch device string.
        with_decisions: also return the per-layer ``decisions`` output (1, depth-1, Nx) int8.
    """

    name = "torch"

    def __init__(
        self, model: GRM, device: str = "cpu", with_decisions: bool = False, checkpoint_sha256: str = ""
    ) -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.with_decisions = with_decisions
        cfg: GrmConfig = model.config
        self.metadata = ModelMetadata(
            config=cfg.name,
            tracker=cfg.tracker,
            precision="fp32",
            package_version=__version__,
            checkpoint_sha256=checkpoint_sha256,
            outputs_masks=with_decisions,
            depth=cfg.model.depth,
        )

    @torch.no_grad()
    def run(self, inputs: Mapping[str, NDArray[np.float32]]) -> dict[str, NDArray[np.float32]]:
        template = torch.from_numpy(np.ascontiguousarray(inputs[contract.TEMPLATE])).to(self.device)
        search = torch.from_numpy(np.ascontiguousarray(inputs[contract.SEARCH])).to(self.device)
        threshold = float(np.asarray(inputs.get(contract.THRESHOLD, [0.0])).reshape(-1)[0])
        mask = inputs.get(contract.TEMPLATE_MASK)
        mask_t = None if mask is None else torch.from_numpy(np.asarray(mask, dtype=np.float32)).to(self.device)
        out = self.model(
            template, search, threshold=threshold, template_mask=mask_t, return_decisions=self.with_decisions
        )
        result = {
            contract.SCORE_MAP: out.score_map.cpu().numpy(),
            contract.SIZE_MAP: out.size_map.cpu().numpy(),
            contract.OFFSET_MAP: out.offset_map.cpu().numpy(),
        }
        if self.with_decisions and out.decisions is not None:
            result[contract.DECISIONS] = out.decisions.cpu().numpy()
        return result

    def close(self) -> None:
        pass


def open_torch_backend(
    path: str | Path,
    config: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    with_decisions: bool = False,
    **_: object,
) -> TorchBackend:
    """Entry point ``grm.backends:torch``: load a checkpoint strictly and wrap it as a runtime backend."""
    if threads:
        torch.set_num_threads(threads)
    model = load_checkpoint(path, config=config)
    return TorchBackend(model, device=device, with_decisions=with_decisions, checkpoint_sha256=sha256_file(path))
