"""Benchmark metrics against hand-computed values, including the protocols' corner cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from grm.benchmarks import metrics as M
from grm.runtime.errors import InputError

GT4 = np.array([[10, 10, 20, 20]] * 4, dtype=float)


def curves(errors, protocol="pytracking"):
    overlap = M.PYTRACKING_OVERLAP if protocol == "pytracking" else M.OTB_OVERLAP
    return M.sequence_curves(errors, overlap, M.PYTRACKING_NORM)


def test_iou_inclusive_and_centres_by_hand():
    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[5.0, 5.0, 10.0, 10.0]])
    # corners 0..9 and 5..14: overlap 5x5 pixels, union 175
    assert M.iou_inclusive(a, b)[0] == pytest.approx(25 / 175)
    err, norm = M.center_errors(b, a)  # centres (9.5, 9.5) and (4.5, 4.5)
    assert err[0] == pytest.approx(math.hypot(5, 5))
    assert norm[0] == pytest.approx(math.hypot(0.5, 0.5))


def test_threshold_tables():
    assert len(M.PYTRACKING_OVERLAP) == len(M.OTB_OVERLAP) == 21
    # PyTorch's arange lands one ulp above 0.65 and 0.75, MATLAB's colon one ulp below 0.65
    assert M.PYTRACKING_OVERLAP[15] > 0.75 and M.PYTRACKING_OVERLAP[13] > 0.65
    assert M.OTB_OVERLAP[15] == 0.75 and M.OTB_OVERLAP[13] < 0.65
    assert M.OTB_OVERLAP[3] == 3 * 0.05 and M.OTB_OVERLAP[0] == 0 and M.OTB_OVERLAP[20] == 1
    assert M.PYTRACKING_NORM[20] == 0.2 and M.CENTER_THRESHOLDS[20] == 20


def test_success_is_strict_and_threshold_values_matter():
    gt = np.array([[1, 1, 20, 1], [1, 1, 20, 1]], dtype=float)
    pred = np.array([[1, 1, 20, 1], [1, 1, 13, 1]], dtype=float)  # frame 1: IoU = 13/20 = 0.65 exactly
    py = curves(M.pytracking_errors(pred, gt, "nfs"))
    otb = curves(M.otb_errors(pred, gt), "otb")
    assert py.success[13] == 0.5  # 0.65 is not > 0.65 + ulp
    assert otb.success[13] == 1.0  # 0.65 > 0.65 - ulp
    assert py.success[12] == otb.success[12] == 1.0
    assert py.success[20] == 0.0  # IoU 1 is never > 1


def test_frame_zero_is_forced_to_ground_truth():
    pred = np.array([[500, 500, 5, 5], [10, 10, 20, 20]], dtype=float)
    e = M.pytracking_errors(pred, GT4[:2], "nfs")
    assert e.iou.tolist() == [1.0, 1.0] and e.center.tolist() == [0.0, 0.0]


def test_uav_nan_rows_are_invalid_but_count_as_precision_hits():
    gt = GT4.copy()
    gt[2] = np.nan
    pred = GT4.copy()
    pred[2] = [300, 300, 20, 20]
    pred[3] = [200, 200, 20, 20]  # lost: IoU 0, centre 190*sqrt(2) px away
    e = M.pytracking_errors(pred, gt, "uav")
    assert e.valid.tolist() == [True, True, False, True] and e.denominator == 3
    assert e.iou[2] == -1 and e.center[2] == -1 and e.center_norm[2] == -1
    c = curves(e)
    assert c.success[0] == pytest.approx(2 / 3)  # frames 0 and 1
    assert c.precision[20] == pytest.approx(3 / 3)  # frames 0, 1 and the NaN frame (-1 <= 20)
    assert c.norm_precision[20] == pytest.approx(1.0)
    assert c.ao == pytest.approx(2 / 3)  # mean IoU over valid frames (1, 1, 0)


def test_nan_ground_truth_is_refused_outside_uav():
    gt = GT4.copy()
    gt[1] = np.nan
    with pytest.raises(InputError, match="only UAV123"):
        M.pytracking_errors(GT4, gt, "nfs")


@pytest.mark.parametrize("bad", [[1, 1, -1, 5], [np.nan, 1, 5, 5]])
def test_invalid_predictions_are_refused(bad):
    pred = GT4.copy()
    pred[2] = bad
    with pytest.raises(InputError, match="NaN or a negative"):
        M.pytracking_errors(pred, GT4, "nfs")


def test_zero_size_prediction_takes_previous_row_unless_gt_is_nan():
    pred = np.array([[10, 10, 20, 20], [15, 10, 20, 20], [0, 0, 0, 5], [0, 0, 7, 0]], dtype=float)
    e = M.pytracking_errors(pred, GT4, "nfs")
    # frames 2 and 3 become frame 1's box (shifted 5 px): IoU = 15*20 / (800 - 300) = 0.6
    assert e.iou.tolist() == pytest.approx([1.0, 0.6, 0.6, 0.6])
    assert e.center.tolist() == pytest.approx([0, 5, 5, 5])
    gt = GT4.copy()
    gt[2] = np.nan
    e = M.pytracking_errors(pred, gt, "uav")
    # frame 2 is kept (its ground truth is NaN); frame 3 copies frame 2 as it stands, (0, 0, 0, 5)
    assert e.iou[2] == -1 and e.iou[3] == 0.0


def test_length_mismatch_rules():
    long = np.vstack([GT4, [[0, 0, 1, 1]] * 3])
    assert M.pytracking_errors(long, GT4, "nfs").iou.tolist() == [1.0] * 4
    assert M.pytracking_errors(long, GT4, "lasot").iou.tolist() == [1.0] * 4
    short = GT4[:2]
    e = M.pytracking_errors(short, GT4, "nfs")  # zero-padded: zero-size boxes at the origin
    assert e.iou.tolist() == [1.0, 1.0, 0.0, 0.0]
    # padded centre (-0.5, -0.5) vs ground-truth centre (19.5, 19.5)
    assert e.center[2] == pytest.approx(20 * math.sqrt(2))
    with pytest.raises(InputError, match="incomplete"):
        M.pytracking_errors(short, GT4, "lasot")


def test_lasot_invisible_frames_fail_both_centre_errors():
    visible = np.array([True, True, False, True])
    e = M.pytracking_errors(GT4, GT4, "lasot", visible)
    assert e.denominator == 3 and e.iou[2] == -1
    assert e.center[2] == np.inf and e.center_norm[2] == np.inf
    c = curves(e)
    assert c.success[0] == 1.0 and c.precision[0] == 1.0 and c.norm_precision[0] == 1.0
    # the extension subset keeps PyTracking's generic rule: invisible = normalised-precision hit
    ext = M.pytracking_errors(GT4, GT4, "lasot_extension_subset", visible)
    assert ext.center[2] == np.inf and ext.center_norm[2] == -1


def test_avist_needs_all_four_values_positive_and_divides_by_all_frames():
    gt = GT4.copy()
    gt[1, 0] = 0.0  # x = 0: invalid for AVisT only
    visible = np.array([True, True, True, False])
    e = M.pytracking_errors(GT4, gt, "avist", visible)
    assert e.valid.tolist() == [True, False, True, False] and e.denominator == 4
    c = curves(e)
    assert c.success[0] == 0.5 and c.precision[20] == 0.5  # invalid frames count as failures
    n = M.pytracking_errors(GT4, gt, "nfs")
    assert n.valid.all() and n.denominator == 4


def test_otb_protocol_rules():
    gt = GT4.copy()
    gt[1] = [0, 10, 20, 20]  # x = 0: not all four positive -> invalid in the OTB toolkit
    pred = GT4.copy()
    pred[2] = [np.nan] * 4  # NaN row takes the previous row
    e = M.otb_errors(pred[:3], gt)  # one row short: the last frame is a failure
    assert e.denominator == 4
    assert e.iou.tolist() == [1.0, -1.0, 1.0, -1.0]
    assert e.center.tolist() == [0.0, -1.0, 0.0, np.inf]
    c = curves(e, "otb")
    assert c.success[0] == 0.5 and c.precision[20] == 0.75  # invalid GT frame is a precision hit


def test_otb_partial_nan_row_is_not_replaced_like_matlab():
    pred = GT4.copy()
    pred[1] = [np.nan, 10, 20, 20]  # only x is NaN and the size is positive: the toolkit keeps it
    e = M.otb_errors(pred, GT4)
    assert np.isnan(e.iou[1])
    assert curves(e, "otb").success[0] == 0.75


def test_summary_averages_sequences_uniformly():
    a = curves(M.pytracking_errors(GT4, GT4, "nfs"))  # all frames IoU 1
    lost = GT4.copy()
    lost[1:] = [200, 200, 20, 20]
    b = curves(M.pytracking_errors(lost, GT4, "nfs"))  # only frame 0
    s = M.summarize([a, b], M.PYTRACKING_OVERLAP)
    # a: success 1 at t < 1 (20 thresholds), 0 at t = 1 -> mean 20/21; b: 1/4 at 20 thresholds
    assert s.auc == pytest.approx(100 * (20 / 21 + 0.25 * 20 / 21) / 2)
    assert s.op50 == pytest.approx(100 * (1 + 0.25) / 2)
    assert s.precision == pytest.approx(100 * (1 + 0.25) / 2)


def test_got10k_iou_excludes_first_and_absent_frames_and_clips():
    gt = np.array([[0, 0, 10, 10], [90, 0, 20, 10], [0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    pred = np.array([[5, 5, 1, 1], [90, 0, 10, 10], [0, 0, 5, 10], [50, 50, 5, 5]], dtype=float)
    cover = np.array([8, 8, 8, 0])
    ious = M.got10k_ious(pred, gt, cover, resolution=(100, 50))
    # frame 1: ground truth clipped to the 100-px width (90..100) equals the prediction -> IoU 1
    assert ious.tolist() == pytest.approx([1.0, 0.5])
    s = M.got10k_summary([ious, np.array([0.8])])
    assert s["AO"] == pytest.approx(100 * (1.0 + 0.5 + 0.8) / 3)
    assert s["SR50"] == pytest.approx(100 * 2 / 3)  # 0.5 is not > 0.5
    assert s["SR75"] == pytest.approx(100 * 2 / 3)
    with pytest.raises(InputError, match="one per frame"):
        M.got10k_ious(pred[:3], gt)


def test_got10k_scores_of_one_sequence_and_of_none():
    assert M.got10k_scores(np.array([1.0, 0.5, 0.8])) == pytest.approx(
        {"AO": 230 / 3, "SR50": 200 / 3, "SR75": 200 / 3}
    )
    assert all(math.isnan(v) for v in M.got10k_scores(np.empty(0)).values())  # every frame without the target
    with pytest.raises(InputError, match="no GOT-10k frame"):
        M.got10k_summary([np.empty(0)])


def test_two_speed_definitions():
    times = [np.array([0.5, 0.01, 0.02]), np.array([0.25, 0.0, np.nan, 0.04])]
    # throughput: frames after the first over their summed seconds
    assert M.throughput_fps(times[:1]) == pytest.approx(2 / 0.03)
    assert M.throughput_fps([np.array([0.5])]) is None and M.throughput_fps([]) is None
    # toolkit: mean of 1/t over all frames of all sequences, the first included, 0 and NaN dropped
    assert M.got10k_fps(times) == pytest.approx(np.mean([2, 100, 50, 4, 25]))
    assert M.got10k_fps([np.array([0.0])]) is None and M.got10k_fps([]) is None
