"""Metrics against hand-computed values, the AUC gate, and grm-calibrate end to end including its error paths."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from grm.calibration.cli import app
from grm.calibration.evaluate import FrameComparison, SequenceComparison
from grm.calibration.metrics import auc_and_precision
from grm.calibration.report import NO_DECISIONS, build_report, format_table, write_report

runner = CliRunner()


def test_success_and_precision_by_hand() -> None:
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 10]], dtype=float)
    pred = np.array([[3, 3, 10, 10], [5, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
    # frame 0 is forced to the ground truth (IoU 1 beats 20 of the 21 thresholds, not 1.0: strictly greater);
    # IoU 1/3 beats 0 ... 0.30 (7); frame 2 has invalid ground truth and is left out of the denominator
    auc, prec = auc_and_precision([pred], [gt])
    assert auc == pytest.approx(100 * 27 / 42) and prec == pytest.approx(100.0)
    # sequences weigh equally, whatever their length
    auc2, _ = auc_and_precision([pred[:2], pred[:1]], [gt[:2], gt[:1]])
    assert auc2 == pytest.approx(100 * (27 / 42 + 20 / 21) / 2)
    assert all(np.isnan(auc_and_precision([], [])))


def _comparison(name: str, shift: float, with_decisions: bool) -> SequenceComparison:
    gt = np.tile([[20.0, 20.0, 40.0, 40.0]], (10, 1))
    moved = gt + [shift, 0, 0, 0]
    same = FrameComparison(box_iou=[0.9] * 9, max_abs={"score_map": 0.1}, sum_abs={"score_map": 1.0},
                           count={"score_map": 10})  # fmt: skip
    if with_decisions:
        same.agreement = [np.array([1.0, 0.5])] * 9
    return SequenceComparison(name, gt.copy(), moved, same, gt)


def test_gate_fails_when_int8_loses_more_than_allowed(tmp_path: Path) -> None:
    bad = [_comparison("a", 30.0, True)]  # INT8 boxes 30 px off: IoU 1/7, AUC falls
    report = build_report(bad, max_auc_drop=1.0, context={})
    assert not report["gate"]["passed"] and report["gate"]["auc_drop"] > 50
    assert report["overall"]["decision_agreement"] == [1.0, 0.5]
    good = build_report([_comparison("a", 0.0, False)], max_auc_drop=1.0, context={})
    assert good["gate"]["passed"] and good["gate"]["auc_drop"] == 0.0 and NO_DECISIONS in good["notes"]
    path = write_report(report, tmp_path / "r.json")
    assert json.loads(path.read_text())["gate"]["passed"] is False
    table = format_table(report)
    assert "FAIL" in table and "1.000 0.500" in table


def test_cli_writes_model_and_report_and_fails_the_gate(tiny_onnx: Path, synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8.onnx"
    args = ["--model", str(tiny_onnx), "--data", str(synth_root), "--output", str(out), "--samples", "8",
            "--threads", "1", "--max-auc-drop", "-100"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "exceeds --max-auc-drop -100.00" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    report = json.loads((tmp_path / "int8.report.json").read_text())
    assert out.is_file() and report["held_out"] == ["synthB"] and report["calibration"]["sequences"] == ["synthA"]
    assert report["gate"]["passed"] is False
    assert len(report["overall"]["decision_agreement"]) == 3
    assert report["sequences"]["synthB"]["frames"] == 20
    assert report["speed"]["fp32_ms"] > 0 and report["speed"]["int8_ms"] > 0
    assert "synthB" in result.stdout and "FAIL" in result.stdout
    # same request again: the crops come from the cache, and a loose gate passes
    again = runner.invoke(app, [*args[:-1], "100"])
    assert again.exit_code == 0, again.output
    assert "crops from cache" in again.stdout


@pytest.mark.parametrize("case", ["int8_model", "not_onnx", "empty_data", "bad_frame"])
def test_cli_user_errors_are_one_line(case: str, tiny_onnx: Path, synth_root: Path, tmp_path: Path, tiny_int8) -> None:
    model, data = tiny_onnx, synth_root
    if case == "int8_model":
        model = tiny_int8.output
    elif case == "not_onnx":
        model = tmp_path / "model.onnx"
        model.write_text("hello")
    elif case == "empty_data":
        data = tmp_path / "empty"
        data.mkdir()
    else:
        data = tmp_path / "data"
        shutil.copytree(synth_root, data)
        (data / "synthA" / "img" / "0002.png").write_bytes(b"broken")
    result = runner.invoke(app, ["--model", str(model), "--data", str(data), "--output", str(tmp_path / "o.onnx"),
                                 "--samples", "4", "--threads", "1"])  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grm-calibrate: error: ")
    expected = {"int8_model": "calibration starts from the FP32 export", "not_onnx": "not an ONNX file",
                "empty_data": "no sequences in", "bad_frame": "cannot be decoded"}  # fmt: skip
    assert expected[case] in lines[0]
    assert not (tmp_path / "o.onnx").exists()


def test_calibration_never_imports_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import grm.calibration.cli, grm.calibration.pipeline, onnxruntime.quantization.calibrate\n"
        "assert sys.modules.get('torch') is None\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_engine_hand_off_reports_a_missing_tensorrt_in_one_line(tiny_int8, tmp_path: Path) -> None:
    import importlib.util

    from grm.calibration.pipeline import build_engine, engine_command
    from grm.runtime.errors import BackendUnavailableError

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed; the GPU test below covers the build")
    command = engine_command(tiny_int8.output, tmp_path / "t.plan")
    assert command[0] == sys.executable and command[-2:] == [str(tiny_int8.output), str(tmp_path / "t.plan")]
    with pytest.raises(BackendUnavailableError, match="TensorRT engine build failed: .*tensorrt") as info:
        build_engine(tiny_int8.output, tmp_path / "t.plan")
    assert "\n" not in str(info.value) and not (tmp_path / "t.plan").exists()


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_int8_qdq_model_builds_a_tensorrt_engine(tiny_int8, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    from grm.calibration.pipeline import build_engine
    from grm.runtime.backends.manifest import manifest_path

    plan = build_engine(tiny_int8.output, tmp_path / "tiny_int8.plan")
    assert plan.stat().st_size > 0 and manifest_path(plan).is_file()
