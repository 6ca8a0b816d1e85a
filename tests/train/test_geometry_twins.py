"""Torch twins of runtime geometry agree with the numpy originals."""

from __future__ import annotations

import numpy as np
import torch

from grm.runtime.decode import decode_box
from grm.train.model.head import decode_boxes


def test_decode_boxes_matches_numpy():
    rng = np.random.default_rng(0)
    score = rng.random((5, 1, 8, 8), dtype=np.float32)
    size = rng.random((5, 2, 8, 8), dtype=np.float32)
    offset = rng.random((5, 2, 8, 8), dtype=np.float32)
    twin = decode_boxes(torch.from_numpy(score), torch.from_numpy(size), torch.from_numpy(offset)).numpy()
    for i in range(5):
        box, _ = decode_box(score[i, 0], size[i], offset[i])
        np.testing.assert_allclose(twin[i], box, atol=1e-7)


def test_first_maximum_wins():
    score = np.zeros((1, 1, 4, 4), dtype=np.float32)
    score[0, 0, 1, 2] = score[0, 0, 3, 0] = 1.0
    size = np.ones((1, 2, 4, 4), dtype=np.float32)
    offset = np.zeros((1, 2, 4, 4), dtype=np.float32)
    twin = decode_boxes(torch.from_numpy(score), torch.from_numpy(size), torch.from_numpy(offset)).numpy()[0]
    box, peak = decode_box(score[0, 0], size[0], offset[0])
    np.testing.assert_allclose(box, [2 / 4, 1 / 4, 1, 1])
    np.testing.assert_allclose(twin, box)
    assert peak == 1.0
