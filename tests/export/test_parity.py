"""Parity bookkeeping: tolerance table, failure messages, report file, crop sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from grm.benchmarks.frames import read_rgb
from grm.benchmarks.textio import read_boxes
from grm.export import parity
from grm.export.parity_data import crop_pairs, sequence_pairs, synthetic_pairs, synthetic_sequence
from grm.runtime import contract
from grm.runtime.errors import DatasetError, InputError, ParityError
from grm.runtime.tracker import Tracker
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
    diverged = _stats(
        max_abs={contract.SCORE_MAP: float("inf"), contract.SIZE_MAP: float("nan"), contract.OFFSET_MAP: 0}
    )
    text = parity.build_report(model, "fp32", [diverged], [], "test").to_json()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not standard JSON"))
    assert data["thresholds"][0]["max_abs"] == {"score_map": None, "size_map": None, "offset_map": 0}
    assert "score_map max abs error inf" in data["failures"][0]


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
    assert len(a) == 4 and a[0].template.image.shape == (1, 3, 64, 64) and a[0].search.shape == (1, 3, 128, 128)
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
    (seq / "groundtruth_rect.txt").write_text("10\t10\t20\t20\n")
    (seq / "img" / "0001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="has 1 usable frames; need at least 2"):
        sequence_pairs(tmp_path, PARAMS)
    (seq / "groundtruth_rect.txt").write_text("10\t10\t20\t20\n12,11,20,20\n")
    (seq / "img" / "0002.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="cannot read frame .*0001.jpg"):
        sequence_pairs(tmp_path, PARAMS)


class _RecordingBackend:
    """Stands in for a model: records what the tracker feeds it, answers with flat maps."""

    def __init__(self) -> None:
        self.name, self.calls = "recording", []

    def run(self, inputs):  # noqa: ANN001, ANN201 (Backend protocol)
        self.calls.append({k: np.array(v) for k, v in inputs.items()})
        f = PARAMS.feat_size
        return {contract.SCORE_MAP: np.full((1, 1, f, f), 0.5, np.float32),
                contract.SIZE_MAP: np.full((1, 2, f, f), 0.25, np.float32),
                contract.OFFSET_MAP: np.full((1, 2, f, f), 0.5, np.float32)}  # fmt: skip

    def close(self) -> None:
        pass


def _tracker_feeds(frames: list[np.ndarray], first_box: list[float], threshold: float) -> dict[str, np.ndarray]:
    """What a runtime Tracker initialised on frames[0] feeds the network for frames[1]."""
    backend = _RecordingBackend()
    tracker = Tracker(backend, params=PARAMS, threshold=threshold)  # type: ignore[arg-type]
    tracker.initialize(frames[0], first_box)
    tracker.track(frames[1])
    return backend.calls[0]


def _assert_same_feeds(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(got) == set(expected) == {*contract.INPUT_NAMES, contract.TEMPLATE_MASK}
    for name, value in expected.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_synthetic_pairs_feed_what_the_tracker_feeds() -> None:
    frames, boxes = synthetic_sequence(2)
    pair = synthetic_pairs(PARAMS, count=1)[0]
    _assert_same_feeds(pair.feeds(0.55), _tracker_feeds(frames, boxes[0], 0.55))


def test_real_pairs_feed_what_the_tracker_feeds(real_sequences: Path) -> None:
    seq = real_sequences / "Crossing"
    frames = [read_rgb(p) for p in sorted((seq / "img").glob("*.jpg"))[:2]]
    first_box = read_boxes(seq / "groundtruth_rect.txt")[0].tolist()
    pair = sequence_pairs(seq, PARAMS, per_sequence=1)[0]
    assert pair.name == "Crossing#1"
    _assert_same_feeds(pair.feeds(0.4), _tracker_feeds(frames, first_box, 0.4))


def test_compare_leaves_the_model_mode_alone() -> None:
    """compare runs the reference in eval mode and restores every module's mode; here the subject is the
    PyTorch model itself, so every error is 0."""
    import torch

    from grm.train import build_model

    torch.manual_seed(0)
    model = build_model("tiny")
    model.box_head.eval()  # a mixed state must come back as it was

    def run(feeds):  # noqa: ANN001, ANN202
        with torch.no_grad():
            out = model(*(torch.from_numpy(feeds[k]) for k in (contract.TEMPLATE, contract.SEARCH)),
                        float(feeds[contract.THRESHOLD][0]), return_decisions=True)  # fmt: skip
        assert not model.training
        return {contract.SCORE_MAP: out.score_map.numpy(), contract.SIZE_MAP: out.size_map.numpy(),
                contract.OFFSET_MAP: out.offset_map.numpy(), contract.DECISIONS: out.decisions.numpy()}  # fmt: skip

    stats = parity.compare(run, model, synthetic_pairs(PARAMS, count=1), thresholds=(0.0,))
    assert stats[0].max_abs == dict.fromkeys(contract.OUTPUT_NAMES, 0.0) and stats[0].decision_agreement == 1.0
    assert model.training and model.backbone.training and not model.box_head.training
