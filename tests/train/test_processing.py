from __future__ import annotations

import numpy as np
import pytest

from grm.runtime.crop import sample_target
from grm.runtime.errors import DatasetError
from grm.train.config import get_config
from grm.train.data.base import SequenceInfo
from grm.train.data.processing import (
    CropSpec,
    InvalidSample,
    Processing,
    crop_input,
    finish_crop,
    flip_box_pixels,
    jitter_box,
    joint_transform,
    nearest_downsample,
    process_pair,
)
from grm.train.data.sampler import PairSampler, causal_pair

PROC = Processing.from_config(get_config("tiny"))
RNG_FRAME = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)


def test_processing_takes_the_config_recipe():
    assert PROC.search == CropSpec(4.0, 3.0, 0.25, 128) and PROC.template == CropSpec(2.0, 0.0, 0.0, 64)
    vitl = Processing.from_config(get_config("vitl_320"))
    assert vitl.search == CropSpec(5.0, 4.5, 0.5, 320) and vitl.feat_size == 20


def test_unjittered_crop_is_the_runtime_crop_and_box_sits_at_the_centre():
    box = np.array([50.0, 40.0, 20.0, 20.0])
    spec = CropSpec(4.0, 0.0, 0.0, 128)
    crop, box_norm = crop_input(RNG_FRAME, box, spec, 16, np.random.default_rng(1))
    assert np.array_equal(crop, sample_target(RNG_FRAME, box, 4.0, 128).image)
    # side = 80 px -> resize factor 1.6; centre maps to (128 - 1) / 2
    np.testing.assert_allclose(box_norm, [(63.5 - 16) / 128, (63.5 - 16) / 128, 0.25, 0.25])


def test_finish_crop_brightness_flip_and_normalisation():
    crop = np.full((4, 4, 3), 100, np.uint8)
    crop[:, 0] = 0
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    img, box = finish_crop(crop, np.array([0.1, 0.2, 0.3, 0.4]), PROC, rng_a)
    factor = rng_b.uniform(0.8, 1.2)
    flipped = rng_b.random() < 0.5
    value = np.float32(100 * np.float32(factor / 255.0))
    expected_red = (value - np.float32(0.485)) / np.float32(0.229)
    column = 3 if flipped else 0
    assert np.isclose(img[0, 0, 1 if column == 0 else 0], expected_red)
    assert np.isclose(img[0, 0, column], (0 - np.float32(0.485)) / np.float32(0.229))
    np.testing.assert_allclose(box, [0.6, 0.2, 0.3, 0.4] if flipped else [0.1, 0.2, 0.3, 0.4], atol=1e-6)


def test_joint_flip_mirrors_pixels_and_box():
    frame = np.zeros((10, 20, 3), np.uint8)
    frame[:, 2] = 255
    (out,), (box,) = joint_transform([frame], [np.array([1.0, 2.0, 3.0, 4.0])], grayscale=False, flip=True)
    assert out[0, 17, 0] == 255  # column x -> W - 1 - x
    np.testing.assert_allclose(box, [15.0, 2.0, 3.0, 4.0])  # corners 1, 4 -> 18, 15
    np.testing.assert_allclose(flip_box_pixels(np.array([0.0, 0.0, 20.0, 1.0]), 20), [-1.0, 0.0, 20.0, 1.0])
    (gray,), _ = joint_transform([RNG_FRAME], [np.zeros(4)], grayscale=True, flip=False)
    assert np.array_equal(gray[..., 0], gray[..., 2])


def test_jitter_statistics_with_a_fixed_seed():
    rng = np.random.default_rng(123)
    spec = CropSpec(4.0, 3.0, 0.25, 128)
    box = np.array([100.0, 100.0, 40.0, 20.0])
    draws = np.stack([jitter_box(box, spec, rng) for _ in range(4000)])
    log_scale = np.log(draws[:, 2:] / box[2:])
    assert abs(log_scale.std() - 0.25) < 0.01 and abs(log_scale.mean()) < 0.015
    shift = (draws[:, :2] + draws[:, 2:] / 2 - 120 * np.array([1, 0.9166667])) / np.sqrt(draws[:, 2:3] * draws[:, 3:4])
    assert np.abs(shift).max() <= 1.5 + 1e-9 and abs(shift.std() - 3 / np.sqrt(12)) < 0.03
    assert np.array_equal(jitter_box(box, CropSpec(2.0, 0.0, 0.0, 64), rng), box)


def test_flip_and_grayscale_rates_with_a_fixed_seed():
    rng = np.random.default_rng(5)
    box = np.array([60.0, 50.0, 30.0, 25.0])
    mirrored, gray = 0, 0
    n = 600
    for _ in range(n):
        out = process_pair(PROC, RNG_FRAME, box, RNG_FRAME, box, rng)
        t_box, s_box = out["template_anno"], out["search_anno"]
        # the template is never jittered, so its box centre shows the per-crop flip: centre at (63.5 or 64.5)/128
        mirrored += bool(abs(t_box[0] + t_box[2] / 2 - 0.5) > 1e-3 and t_box[0] + t_box[2] / 2 > 0.5)
        gray += bool(np.allclose(out["template"][0] * 0.229 + 0.485, out["template"][1] * 0.224 + 0.456, atol=1e-5))
        assert out["heatmap"].shape == (8, 8) and out["search"].shape == (3, 128, 128)
        assert np.isfinite(s_box).all()
    assert abs(mirrored / n - 0.5) < 0.07
    assert 0.02 < gray / n < 0.09


def test_all_padding_crop_is_invalid():
    mask = np.ones((128, 128), bool)
    mask[5, 5] = False  # one image pixel that the nearest 8x8 grid never samples
    assert not mask.all() and nearest_downsample(mask, 8).all()
    with pytest.raises(InvalidSample):
        crop_input(
            RNG_FRAME, np.array([0.0, 0.0, 0.0, 5.0]), CropSpec(4.0, 0.0, 0.0, 128), 16, np.random.default_rng(0)
        )


def test_causal_pairs_respect_order_visibility_and_interval():
    rng = np.random.default_rng(0)
    visible = np.zeros(600, bool)
    visible[[0, 10, 300, 320, 599]] = True
    for _ in range(300):
        t, s = causal_pair(visible, rng, max_interval=200)
        assert visible[t] and visible[s] and t < s and t < 599
        assert s - t < 200 + 5 * 60
    pairs = {causal_pair(visible, rng, 200) for _ in range(300)}
    assert (0, 10) in pairs and (300, 320) in pairs


class _FakeVideo:
    """In-memory video: frames with the target fully outside the image in odd frames."""

    name = "FAKE"
    is_video = True

    def __init__(self, unreadable: bool = False) -> None:
        self.unreadable = unreadable
        boxes = np.tile(np.array([[60.0, 50.0, 30.0, 25.0]], np.float32), (30, 1))
        boxes[1::2] = [5000.0, 5000.0, 10.0, 10.0]
        self.info = SequenceInfo(boxes=boxes, visible=np.ones(30, bool))

    def __len__(self) -> int:
        return 1

    def sequence_info(self, seq: int) -> SequenceInfo:
        return self.info

    def frame(self, seq: int, frame_id: int) -> np.ndarray:
        if self.unreadable:
            raise DatasetError(f"frame {frame_id} is not a readable image")
        return RNG_FRAME


def test_sampler_counts_skips_and_gives_up_after_the_cap():
    sampler = PairSampler([_FakeVideo()], [1.0], PROC, samples_per_epoch=40, seed=1)
    skipped = [int(sampler[i]["skipped"]) for i in range(40)]
    assert sum(skipped) > 0  # half of the frames put the target outside the image
    assert np.array_equal(sampler[3]["search"], sampler[3]["search"])  # a pure function of (seed, epoch, index)
    sampler.set_epoch(1)
    assert not np.array_equal(sampler[3]["search"], PairSampler([_FakeVideo()], [1.0], PROC, 40, seed=1)[3]["search"])
    broken = PairSampler([_FakeVideo(unreadable=True)], [1.0], PROC, samples_per_epoch=4, max_attempts=5)
    with pytest.raises(DatasetError, match="5 consecutive unusable samples"):
        broken[0]


def test_sampler_on_generated_data_and_dataset_ratios(synth_root):
    from grm.train.data.got10k import Got10k

    ds = Got10k(synth_root)
    sampler = PairSampler([ds, _FakeVideo()], [3.0, 1.0], PROC, samples_per_epoch=8, seed=0)
    np.testing.assert_allclose(sampler.weights, [0.75, 0.25])
    sample = sampler[0]
    assert sample["template"].shape == (3, 64, 64) and sample["template"].dtype == np.float32
    assert sample["heatmap"].max() == 1.0
    rng = np.random.default_rng(0)
    picks = rng.choice(2, size=4000, p=sampler.weights)
    assert abs(picks.mean() - 0.25) < 0.03
