"""Metrics against hand-computed values, the AUC gate, and grm-calibrate end to end including its error paths."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from grm.calibration import main
from grm.calibration.cli import app
from grm.calibration.evaluate import FrameComparison, SequenceComparison
from grm.calibration.metrics import auc_and_precision
from grm.calibration.report import NO_DECISIONS, build_report, format_table, write_report
from tests.badinput import Hint, check_hint, check_one_line_failure, run_main

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
    """A failed gate keeps the model only as <stem>.gate-failed.onnx beside its report (exit 1); a passing one
    writes --output and <output>.report.json."""
    out = tmp_path / "int8.onnx"
    args = ["--model", str(tiny_onnx), "--data", str(synth_root), "--output", str(out), "--samples", "8",
            "--threads", "1", "--max-auc-drop", "-100"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "exceeds --max-auc-drop -100.00" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert f"kept as {tmp_path / 'int8.gate-failed.onnx'}" in result.stderr
    assert not out.exists() and not (tmp_path / "int8.report.json").exists()
    report = json.loads((tmp_path / "int8.gate-failed.report.json").read_text())
    assert report["int8_model"] == str(tmp_path / "int8.gate-failed.onnx")
    assert (tmp_path / "int8.gate-failed.onnx").is_file()
    assert report["held_out"] == ["synthB"] and report["calibration"]["sequences"] == ["synthA"]
    assert report["gate"]["passed"] is False
    assert len(report["overall"]["decision_agreement"]) == 3
    assert report["sequences"]["synthB"]["frames"] == 20
    assert report["speed"]["fp32_ms"] > 0 and report["speed"]["int8_ms"] > 0
    assert "synthB" in result.stdout and "FAIL" in result.stdout
    # a note per stage as it starts, no bar off a terminal; every output named, the cache with its size
    notes = [line for line in result.stdout.splitlines() if line.startswith("grm-calibrate: ")]
    for stage in (
        "calibration crops: 8 from synthA",
        "calibrating activation ranges (minmax) on 8 crops",
        "evaluating INT8 against FP32 on held-out synthB (1 of 1)",
        "timing FP32 and INT8",
    ):
        assert any(stage in note for note in notes), (stage, notes)
    cache = tmp_path / "calibration-cache"
    assert result.stdout.splitlines()[-3:-1] == [
        f"wrote {tmp_path / 'int8.gate-failed.onnx'} (INT8 model, --target tensorrt, failed the --max-auc-drop gate)",
        f"wrote {tmp_path / 'int8.gate-failed.report.json'} (accuracy and speed report)",
    ]
    size = sum(p.stat().st_size for p in cache.iterdir())
    assert result.stdout.splitlines()[-1].startswith(f"wrote {cache}/ (calibration crop cache, {size / 1e6:.1f} MB;")
    assert f"rm -r {cache} frees it" in result.stdout and "next:" not in result.stdout
    # same request again: the crops come from the cache, and a loose gate passes
    again = runner.invoke(app, [*args[:-1], "100"])
    assert again.exit_code == 0, again.output
    assert again.stderr == ""
    assert out.is_file() and json.loads((tmp_path / "int8.report.json").read_text())["int8_model"] == str(out)
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    last = again.stdout.splitlines()[-5:]
    assert last[:2] == [
        f"wrote {out} (INT8 model, --target tensorrt)",
        f"wrote {tmp_path / 'int8.report.json'} (accuracy and speed report)",
    ]
    assert last[2].startswith(f"crops from cache {cache}/ ({size / 1e6:.1f} MB;")
    assert last[3:] == [
        f"next: grm-run SOURCE --model {out} --box x,y,w,h",
        f"next: grm-bench speed --engine {tiny_onnx} --engine {out} --source SOURCE --box x,y,w,h",
    ]
    for line in last[3:]:
        check_hint(Hint("grm-calibrate output", line.removeprefix("next: ")))


@pytest.mark.parametrize("case", ["int8_model", "not_onnx", "empty_data", "bad_frame"])
def test_cli_user_errors_are_one_line(
    case: str, tiny_onnx: Path, synth_root: Path, tmp_path: Path, tiny_int8, capsys: pytest.CaptureFixture[str]
) -> None:
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
    result = run_main(main, ["--model", str(model), "--data", str(data), "--output", str(tmp_path / "o.onnx"),
                             "--samples", "4", "--threads", "1"], capsys)  # fmt: skip
    expected = {"int8_model": "calibration starts from the FP32 export", "not_onnx": "not an ONNX file",
                "empty_data": "no sequences in", "bad_frame": "cannot be decoded"}  # fmt: skip
    check_one_line_failure(result, 2, "grm-calibrate", ["grm-calibrate: error: ", expected[case]])
    assert not (tmp_path / "o.onnx").exists()


def test_calibration_never_imports_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import grm.calibration.cli, grm.calibration.pipeline, onnxruntime.quantization.calibrate\n"
        "assert sys.modules.get('torch') is None\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_engine_without_tensorrt_is_one_line_naming_the_packages(tiny_int8, tmp_path: Path, monkeypatch) -> None:
    from grm.calibration.pipeline import build_engine
    from grm.runtime.errors import BackendUnavailableError

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="needs the tensorrt package.*pip install tensorrt") as info:
        build_engine(tiny_int8.output, tmp_path / "t.plan")
    assert "\n" not in str(info.value) and "grm-tracker[" not in str(info.value)
    assert not (tmp_path / "t.plan").exists()


def test_engine_is_built_in_process_as_int8(tiny_int8, tmp_path: Path, monkeypatch) -> None:
    """The calibrated Q/DQ model goes straight to the runtime's builder (no child process, no torch) and the
    plan's manifest says int8; a fake tensorrt 10 and a fake cuda-python stand in for the GPU."""
    from grm.calibration.pipeline import build_engine
    from grm.runtime.backends.manifest import read_manifest
    from tests.runtime.trt_fakes import FakeCudart, make_trt

    trt = make_trt(version="10.13.0.35")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", FakeCudart())
    plan = build_engine(tiny_int8.output)
    assert plan == tiny_int8.output.with_suffix(".plan")
    assert plan.read_bytes() == b"PLAN|strong|int8|tf32=False" and not trt.state.errors
    manifest = read_manifest(plan)
    assert manifest.metadata.precision == "int8" and manifest.metadata.config == "tiny"
    plan.unlink()
    plan.with_name(plan.name + ".json").unlink()


def test_cli_engine_lines_and_next_commands_use_the_plan(
    tiny_onnx: Path, synth_root: Path, tmp_path: Path, monkeypatch
) -> None:  # noqa: ANN001
    """--engine (fake TensorRT 10 and cuda-python): the plan and its manifest are named, and the next commands
    run the plan."""
    from tests.runtime.trt_fakes import FakeCudart, make_trt

    monkeypatch.setitem(sys.modules, "tensorrt", make_trt(version="10.13.0.35"))
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", FakeCudart())
    out = tmp_path / "int8.onnx"
    result = runner.invoke(app, ["--model", str(tiny_onnx), "--data", str(synth_root), "--output", str(out),
                                 "--samples", "4", "--threads", "1", "--eval-frames", "4", "--max-auc-drop", "100",
                                 "--engine"])  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = tmp_path / "int8.plan"
    lines = result.stdout.splitlines()
    assert f"grm-calibrate: building the TensorRT INT8 engine {plan}" in lines
    assert lines[-4:] == [
        f"wrote {plan} (TensorRT INT8 engine)",
        f"wrote {plan}.json (engine manifest)",
        f"next: grm-run SOURCE --model {plan} --box x,y,w,h",
        f"next: grm-bench speed --engine {tiny_onnx} --engine {plan} --source SOURCE --box x,y,w,h",
    ]
    assert plan.is_file() and Path(f"{plan}.json").is_file()


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="needs tensorrt and an NVIDIA GPU")
def test_int8_qdq_model_builds_a_tensorrt_engine(tiny_int8, tmp_path: Path) -> None:
    from grm.calibration.pipeline import build_engine
    from grm.runtime.backends.manifest import read_manifest

    plan = build_engine(tiny_int8.output, tmp_path / "tiny_int8.plan")
    assert plan.stat().st_size > 0 and read_manifest(plan).metadata.precision == "int8"
