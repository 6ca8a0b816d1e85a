"""Parity bookkeeping: tolerance table, failure messages, report file, crop sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from grm.export import parity
from grm.export.parity_data import crop_pairs, read_boxes, sequence_pairs, synthetic_pairs
from grm.runtime import contract
from grm.runtime.errors import DatasetError, ParityError
from grm.train.config import get_config

PARAMS = get_config("tiny").tracker


def _stats(threshold: float = 0.4, **changes: object) -> parity.ThresholdStats:
    base = parity.ThresholdStats(
        threshold,
        max_abs={contract.SCORE_MAP: 1e-7, contract.SIZE_MAP: 1e-7, contract.OFFSET_MAP: 1e-6},
        decision_agreement=1.0,
        decision_agreement_per_block=[1.0, 1.0, 1.0],
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_tolerance_table_has_one_row_per_precision() -> None:
    assert set(parity.TOLERANCES) == {"fp32", "fp16"}
    fp32, fp16 = parity.TOLERANCES["fp32"], parity.TOLERANCES["fp16"]
    assert all(v <= 1e-4 for v in fp32.max_abs.values()) and fp32.min_decision_agreement == 1.0
    assert fp16.min_decision_agreement == 0.99 and fp16.min_mean_iou == 0.99
    assert set(fp32.max_abs) == set(fp16.max_abs) == set(contract.OUTPUT_NAMES)


def test_failures_name_output_threshold_and_error() -> None:
    bad = _stats(max_abs={contract.SCORE_MAP: 1e-7, contract.SIZE_MAP: 1e-7, contract.OFFSET_MAP: 3.2e-3})
    assert parity.failures([bad], parity.TOLERANCES["fp32"]) == [
        "offset_map max abs error 0.0032 > 0.0001 at threshold 0.4"
    ]
    nan = _stats(0.0, max_abs={contract.SCORE_MAP: float("nan"), contract.SIZE_MAP: 0.0, contract.OFFSET_MAP: 0.0})
    assert "score_map max abs error nan" in parity.failures([nan], parity.TOLERANCES["fp32"])[0]
    flips = _stats(0.6, decision_agreement=0.985, mean_iou=0.95)
    assert parity.failures([flips], parity.TOLERANCES["fp16"]) == [
        "decisions agree 98.500% < 99% at threshold 0.6",
        "decoded box mean IoU 0.9500 < 0.99 at threshold 0.6",
    ]


def test_report_written_before_parity_error(tmp_path: Path) -> None:
    model = tmp_path / "grm_tiny.onnx"
    bad = _stats(decision_agreement=0.9)
    report = parity.build_report(model, "fp32", [_stats(0.0), bad], [], "test")
    with pytest.raises(ParityError) as info:
        parity.write_and_check(report)
    message = str(info.value)
    assert "\n" not in message and "decisions agree 90.000% < 100% at threshold 0.4" in message
    assert str(tmp_path / "grm_tiny.parity.json") in message
    data = json.loads((tmp_path / "grm_tiny.parity.json").read_text())
    assert data["passed"] is False and data["thresholds"][1]["decision_agreement"] == 0.9
    assert data["tolerance"]["min_decision_agreement"] == 1.0


def test_passing_report_and_summary(tmp_path: Path) -> None:
    report = parity.build_report(tmp_path / "m.onnx", "fp16", [_stats(0.0), _stats(0.55)], [], "synthetic")
    path = parity.write_and_check(report)
    assert json.loads(path.read_text())["passed"] is True
    lines = report.summary_lines()
    assert lines[0].startswith("parity fp16 ONNX (ONNX Runtime CPU) vs PyTorch fp32")
    assert "threshold 0.55" in lines[2] and "decisions 100.00%" in lines[2]
    assert lines[-1] == "  PASS"


def test_tracker_box_uses_hann_weighted_score() -> None:
    score = np.full((1, 1, 8, 8), 0.1, dtype=np.float32)
    score[0, 0, 0, 0] = 0.9  # raw maximum in a corner, where the window is small
    score[0, 0, 4, 3] = 0.5
    size = np.full((1, 2, 8, 8), 0.25, dtype=np.float32)
    offset = np.full((1, 2, 8, 8), 0.5, dtype=np.float32)
    box = parity.tracker_box({contract.SCORE_MAP: score, contract.SIZE_MAP: size, contract.OFFSET_MAP: offset})
    np.testing.assert_allclose(box, [(3 + 0.5) / 8, (4 + 0.5) / 8, 0.25, 0.25])


def test_synthetic_pairs_are_deterministic_and_shaped() -> None:
    a, b = synthetic_pairs(PARAMS), synthetic_pairs(PARAMS)
    assert len(a) == 4 and a[0].template.shape == (1, 3, 64, 64) and a[0].search.shape == (1, 3, 128, 128)
    assert all(np.array_equal(x.search, y.search) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].search, a[1].search)
    pairs, source = crop_pairs(PARAMS, None)
    assert source.startswith("synthetic") and len(pairs) == 4


def test_real_sequence_pairs(real_sequences: Path) -> None:
    pairs = sequence_pairs(real_sequences / "Crossing", PARAMS, per_sequence=3)
    assert [p.name for p in pairs] == ["Crossing#1", "Crossing#60", "Crossing#119"]
    assert pairs[0].search.dtype == np.float32 and abs(float(pairs[0].search.mean())) < 3


def test_sequence_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="parity data folder not found"):
        sequence_pairs(tmp_path / "absent", PARAMS)
    with pytest.raises(DatasetError, match="holds no sequence"):
        sequence_pairs(tmp_path, PARAMS)
    seq = tmp_path / "seq"
    (seq / "img").mkdir(parents=True)
    (seq / "groundtruth_rect.txt").write_text("10\t10\t20\t20\n12,11,20,20\n")
    (seq / "img" / "0001.jpg").write_bytes(b"not a jpeg")
    (seq / "img" / "0002.jpg").write_bytes(b"not a jpeg")
    assert read_boxes(seq / "groundtruth_rect.txt") == [[10, 10, 20, 20], [12, 11, 20, 20]]
    with pytest.raises(DatasetError, match="cannot read frame .*0001.jpg"):
        sequence_pairs(tmp_path, PARAMS)
