from __future__ import annotations

import math

import numpy as np

from grm.train.data.label import gaussian_radius, gaussian_window, heatmap, label_centre


def test_radius_uses_the_official_cornernet_variant():
    # w = h = 4 cells: r3 = (-11.2 + sqrt(179.2)) / 2 = 1.09 -> 1 (the corrected /2a formula would give 0)
    assert gaussian_radius([4.0, 4.0]) == 1
    assert gaussian_radius([8.0, 8.0]) == 2  # (-22.4 + sqrt(716.8)) / 2 = 2.19
    assert gaussian_radius([2.0, 2.0]) == 0
    assert gaussian_radius([16.0, 2.0]) == 1
    assert gaussian_radius(np.array([[0.0, 0.0], [4.0, 4.0]])).tolist() == [0, 1]


def test_gaussian_window_peak_and_sigma():
    g = gaussian_window(1)
    assert g.shape == (3, 3) and g[1, 1] == 1.0
    assert math.isclose(float(g[1, 2]), math.exp(-2.0), rel_tol=1e-6)  # sigma = 3/6


def test_peak_lands_on_the_rounded_centre_cell():
    label = heatmap([0.5, 0.5, 0.25, 0.25], 8)  # centre 5.0 cells, 2 cells wide -> radius 0
    assert label.max() == 1.0 and np.argwhere(label == 1.0).tolist() == [[5, 5]]
    label = heatmap([0.25, 0.25, 0.5, 0.5], 8)  # centre 4.0, 4 cells wide -> radius 1
    assert np.argwhere(label == 1.0).tolist() == [[4, 4]] and (label > 0).sum() == 9


def test_centre_rounds_half_to_even():
    assert label_centre([0.1875, 0.3125, 0.25, 0.25], 8) == (2, 4)  # 2.5 -> 2, 3.5 -> 4


def test_window_is_clipped_at_the_border():
    label = heatmap([0.75, 0.25, 0.5, 0.5], 8)  # centre x = 8 (one past the last column), y = 4, radius 1
    assert label.max() < 1.0
    assert np.flatnonzero(label.any(axis=0)).tolist() == [7]
    assert math.isclose(float(label[4, 7]), math.exp(-2.0), rel_tol=1e-6)
    assert not heatmap([2.0, 2.0, 0.1, 0.1], 8).any()
