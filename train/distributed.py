"""Process-group setup for single-process and ``torchrun`` (DDP, ``env://``) training, and per-rank seeding."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from grm.runtime.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info_from_env(environ: Mapping[str, str] | None = None) -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK as set by torchrun."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ConfigError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {e}") from e
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def choose_device(info: DistInfo, device: str | None = None) -> torch.device:
    """The requested device, else ``cuda:<local_rank>`` when CUDA is present, else CPU."""
    if device:
        try:
            chosen = torch.device(device)
        except RuntimeError as e:
            raise ConfigError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:0, ...)") from e
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA GPU is available to torch; use --device cpu")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda", info.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(info: DistInfo, device: torch.device) -> None:
    """Join the process group through ``env://`` (NCCL on GPUs, gloo on CPU); no-op for one process."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, init_method="env://", rank=info.rank, world_size=info.world_size)
    log.info("joined process group: rank %d of %d (%s)", info.rank, info.world_size, backend)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch (the official trainer uses 42 + local rank) and pin cuDNN to determinism."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is set on any rank (the flag itself without a process group), so all ranks agree."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def average_across_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Mean of each scalar over all ranks (identity without a process group)."""
    if not dist.is_initialized() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}


class RankIndices(torch.utils.data.Sampler[int]):
    """Sample indices of one rank: ``rank, rank + world, ...`` below ``total`` (disjoint across ranks).

    Samples are functions of (seed, epoch, index), so shuffling is unnecessary; each rank gets
    ``total // world`` indices like ``DistributedSampler(drop_last=True)``. ``skip`` leaves out this rank's first
    indices (those an interrupted run already trained on), so a resumed epoch continues where it stopped.
    """

    def __init__(self, total: int, rank: int = 0, world_size: int = 1, skip: int = 0) -> None:
        self.total, self.rank, self.world = total, rank, world_size
        self.count = total // world_size
        self.skip = min(max(skip, 0), self.count)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.count * self.world, self.world)[self.skip :])

    def __len__(self) -> int:
        return self.count - self.skip
