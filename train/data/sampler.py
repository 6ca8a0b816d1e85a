"""The official "causal" pair sampler (docs/training.md, pair sampling) as a map-style dataset of processed samples.

Sample ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``: its random generator is
``numpy.random.default_rng([seed, e, i])``. The official sampler ignores the index and draws from each
worker's global state; deriving the generator from the index keeps every statistic of the recipe while
making runs independent of the worker count, splittable across ranks, and exactly resumable.

Unusable draws (a degenerate or all-padding crop, an unreadable frame) are redrawn, counted in the
sample's ``skipped`` field, and capped: after ``max_attempts`` failures in a row the last reason is
raised as a :class:`DatasetError`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from grm.runtime.errors import DatasetError, InputError
from grm.train.data.base import SequenceInfo, TrackingDataset
from grm.train.data.processing import InvalidSample, Processing, process_pair

log = logging.getLogger(__name__)
MIN_VISIBLE = 4  # video sequences need more than 2 * (1 template + 1 search) visible frames
MIN_LENGTH = 20
GAP_STEP = 5


def sample_visible(visible: NDArray[np.bool_], rng: np.random.Generator, min_id: int, max_id: int) -> int | None:
    """A uniformly drawn visible frame in [min_id, max_id) (clipped to the sequence), or None."""
    lo, hi = max(min_id, 0), min(max_id, len(visible))
    candidates = np.flatnonzero(visible[lo:hi]) + lo if hi > lo else np.empty(0, np.int64)
    return int(rng.choice(candidates)) if len(candidates) else None


def causal_pair(
    visible: NDArray[np.bool_], rng: np.random.Generator, max_interval: int, max_tries: int = 1000
) -> tuple[int, int]:
    """(template, search) frame ids with template < search < template + max_interval + gap.

    The template is a visible frame in [0, len - 1); the search a visible frame after it. When none is
    found the window widens by 5 frames and a new template is drawn.
    """
    gap = 0
    for _ in range(max_tries):
        base = sample_visible(visible, rng, 0, len(visible) - 1)
        if base is not None:
            search = sample_visible(visible, rng, base + 1, base + max_interval + gap)
            if search is not None:
                return base, search
        gap += GAP_STEP
    raise DatasetError(f"no (template, search) pair found in {max_tries} tries in a sequence of {len(visible)} frames")


class PairSampler:
    """Processed training samples drawn from several datasets with the given ratios.

    Args:
        datasets: training sources.
        ratios: relative sampling weights (normalised here).
        processing: crop/label parameters.
        samples_per_epoch: epoch length (the number of indices).
        max_interval: largest template-search frame distance before widening (200).
        seed: base of every sample's generator.
        max_attempts: consecutive unusable draws allowed for one sample.
    """

    def __init__(
        self,
        datasets: Sequence[TrackingDataset],
        ratios: Sequence[float],
        processing: Processing,
        samples_per_epoch: int,
        max_interval: int = 200,
        seed: int = 42,
        max_attempts: int = 100,
    ) -> None:
        if not datasets or len(datasets) != len(ratios):
            raise DatasetError("need at least one dataset and one ratio per dataset")
        weights = np.asarray(ratios, dtype=np.float64)
        if (weights < 0).any() or weights.sum() <= 0:
            raise DatasetError(f"dataset ratios {list(ratios)} must be non-negative with a positive sum")
        self.datasets = list(datasets)
        self.weights = weights / weights.sum()
        self.processing = processing
        self.samples_per_epoch = samples_per_epoch
        self.max_interval = max_interval
        self.seed = seed
        self.max_attempts = max_attempts
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples ``__getitem__`` returns (call before creating the loader's iterator)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, NDArray]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        reason = ""
        for attempt in range(self.max_attempts):
            try:
                sample = self._draw(rng)
            except (InvalidSample, InputError) as e:
                reason = str(e)
                continue
            except DatasetError as e:  # unreadable frame: a documented skip, still capped
                log.warning("skipping a sample: %s", e)
                reason = str(e)
                continue
            sample["skipped"] = np.int64(attempt)
            return sample
        raise DatasetError(
            f"{self.max_attempts} consecutive unusable samples (last: {reason}); "
            "check the dataset annotations and crop settings"
        )

    def _draw(self, rng: np.random.Generator) -> dict[str, NDArray]:
        ds = self.datasets[int(rng.choice(len(self.datasets), p=self.weights))]
        seq, info = self._pick_sequence(ds, rng)
        if ds.is_video:
            t_id, s_id = causal_pair(info.visible, rng, self.max_interval)
            t_frame, s_frame = ds.frame(seq, t_id), ds.frame(seq, s_id)
        else:
            t_id = s_id = 0
            t_frame = ds.frame(seq, 0)
            s_frame = t_frame
        return process_pair(self.processing, t_frame, info.boxes[t_id], s_frame, info.boxes[s_id], rng)

    def _pick_sequence(
        self, ds: TrackingDataset, rng: np.random.Generator, max_tries: int = 1000
    ) -> tuple[int, SequenceInfo]:
        """Uniform sequence; video sequences need > 4 visible frames and >= 20 frames (redrawn otherwise)."""
        for _ in range(max_tries):
            seq = int(rng.integers(len(ds)))
            info = ds.sequence_info(seq)
            if not ds.is_video or (int(info.visible.sum()) > MIN_VISIBLE and len(info) >= MIN_LENGTH):
                return seq, info
        raise DatasetError(
            f"{ds.name}: no sequence with more than {MIN_VISIBLE} visible frames and at least "
            f"{MIN_LENGTH} frames found in {max_tries} draws"
        )


def collate(samples: Sequence[dict[str, NDArray]]) -> dict[str, NDArray]:
    """Stack samples along a new batch axis (numpy; the trainer converts to tensors)."""
    return {key: np.stack([s[key] for s in samples]) for key in samples[0]}
