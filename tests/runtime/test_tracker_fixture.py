"""Tracker-level conformance: crops, decisions, maps and boxes against the official tracker on the tiny fixture."""

from __future__ import annotations

import numpy as np
import pytest

from grm.runtime import Tracker
from grm.runtime.crop import sample_target
from grm.runtime.decode import hann2d

torch = pytest.importorskip("torch")


class RecordingBackend:
    """Wraps a backend and keeps what the tracker fed it and got back."""

    def __init__(self, inner):
        self.inner, self.metadata, self.name = inner, inner.metadata, "recording"
        self.calls = []

    def run(self, inputs):
        out = self.inner.run(inputs)
        self.calls.append(({k: np.array(v) for k, v in inputs.items()}, out))
        return out

    def close(self):
        pass


@pytest.fixture(scope="module")
def backend(upstream_tiny):
    from grm.runtime.backends import open_checkpoint

    torch.set_num_threads(1)
    return open_checkpoint(upstream_tiny / "GRM_ep0001.pth.tar", config="tiny", with_decisions=True)


@pytest.mark.parametrize("dataset", ["lasot", "otb"])
def test_tracker_matches_official(upstream_tiny, backend, dataset):
    seq = np.load(upstream_tiny / "sequence.npz")
    ref = np.load(upstream_tiny / f"track_{dataset}.npz")
    frames, gt = seq["frames"], seq["gt"]
    params = backend.metadata.tracker
    threshold = params.threshold_for(dataset)
    assert threshold == float(ref["threshold"])
    recorder = RecordingBackend(backend)
    tracker = Tracker(recorder, threshold=threshold)
    tracker.initialize(frames[0], gt[0])
    boxes = [list(gt[0])]
    for i in range(1, len(frames)):
        result = tracker.track(frames[i])
        boxes.append(result.box_xywh)
        np.testing.assert_array_equal(result.decisions, ref["decisions"][i - 1][1:], err_msg=f"frame {i}")
        out = recorder.calls[-1][1]
        assert np.abs(out["score_map"][0, 0] - ref["score_map"][i - 1]).max() <= 1e-5
        response = hann2d(params.feat_size) * out["score_map"][0, 0]
        assert np.abs(response - ref["response"][i - 1]).max() <= 1e-5
    assert np.abs(np.array(boxes) - ref["boxes"]).max() <= 1e-3


def test_crops_are_bit_exact(upstream_tiny):
    seq = np.load(upstream_tiny / "sequence.npz")
    ref = np.load(upstream_tiny / "track_lasot.npz")
    template = sample_target(seq["frames"][0], seq["gt"][0], 2.0, 64)
    np.testing.assert_array_equal(template.image, ref["template_crop"])
    assert abs(template.resize_factor - float(ref["template_resize_factor"])) <= 1e-12
    for i in range(1, len(seq["frames"])):
        crop = sample_target(seq["frames"][i], ref["boxes"][i - 1], 4.0, 128)
        np.testing.assert_array_equal(crop.image, ref["search_crops"][i - 1], err_msg=f"frame {i}")
        assert abs(crop.resize_factor - ref["resize_factor"][i - 1]) <= 1e-12


def test_hann_window_matches(upstream_tiny):
    ref = np.load(upstream_tiny / "track_otb.npz")
    assert np.abs(hann2d(8) - ref["output_window"][0, 0]).max() <= 1e-7


def test_template_box_mask_matches_official(upstream_tiny):
    from grm.runtime.geometry import box_to_crop_xywh, template_box_mask

    seq = np.load(upstream_tiny / "sequence.npz")
    ref = np.load(upstream_tiny / "track_lasot.npz")
    box = seq["gt"][0]
    crop_box = box_to_crop_xywh(box, box, float(ref["template_resize_factor"]), 64, normalize=True)
    np.testing.assert_array_equal(template_box_mask(crop_box, 4), ref["box_mask_z"][0])
