"""The ``--target cpu`` form: metadata, fused integer kernels in ONNX Runtime, decisions kept, speed lines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from grm.calibration import main
from grm.calibration.collect import save
from grm.calibration.evaluate import FrameComparison, SequenceComparison, compare_on_sequence
from grm.calibration.graph import resolve_group
from grm.calibration.quantize import TARGETS, QuantizeOptions, QuantizeResult, check_fp32_export, quantize
from grm.calibration.report import build_report, format_table
from grm.calibration.sequences import discover
from grm.calibration.speed import SpeedResult, model_target, step_ratios
from grm.calibration.speed import main as speed_main
from grm.runtime.backends import open_model
from grm.runtime.errors import ArtifactMismatchError, InputError
from tests.badinput import check_one_line_failure, run_main


@pytest.fixture(scope="module")
def tiny_cpu(tiny_onnx: Path, calib_set, tmp_path_factory: pytest.TempPathFactory) -> QuantizeResult:
    output = tmp_path_factory.mktemp("cpu") / "tiny_cpu.onnx"
    return quantize(tiny_onnx, calib_set, output, QuantizeOptions(target="cpu"))


def _optimised_ops(path: Path, tmp_path: Path) -> Counter[str]:
    """Op types of the graph ONNX Runtime CPU actually runs (the runtime's session options)."""
    import onnxruntime as ort

    from grm.runtime.backends.ort import session_options

    opts = session_options(ort, 1)
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(str(tmp_path / "optimised.onnx")).graph.node)


def test_metadata_records_the_target(tiny_cpu: QuantizeResult, tiny_int8: QuantizeResult) -> None:
    for result, target in ((tiny_cpu, "cpu"), (tiny_int8, "tensorrt")):
        calibration = result.metadata.extra["calibration"]
        assert calibration["target"] == target and calibration["form"] == TARGETS[target]
        assert model_target(result.output) == target
        assert open_model(result.output, backend="onnxruntime", threads=1).metadata.precision == "int8"
    assert tiny_cpu.metadata.extra["calibration"]["method"] == "dynamic"


def test_cpu_form_runs_fused_integer_matmuls(tiny_onnx: Path, tiny_cpu: QuantizeResult, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_cpu.output))
    written = Counter(n.op_type for n in model.graph.node)
    assert written["QuantizeLinear"] == written["DequantizeLinear"] == 0
    # tiny: 4 blocks x (qkv, proj, fc1, fc2) weight MatMuls + 4 x (q.k^T, p.v) quantised; the predictor stays FP32
    assert len(tiny_cpu.quantized) == written["MatMulInteger"] == 16 + 8
    fp32 = onnx.load(str(tiny_onnx))
    predictor = set(resolve_group(fp32, "predictor"))
    assert len(predictor) == 9 and predictor <= set(tiny_cpu.excluded)
    float_matmuls = {n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm")}
    assert predictor <= float_matmuls
    ops = _optimised_ops(tiny_cpu.output, tmp_path)
    assert ops["DynamicQuantizeMatMul"] == 24  # u8 x s8 with the float result (and bias) in one kernel
    assert ops["DynamicQuantizeLinear"] == 8  # the activation B operand of each attention product
    assert ops["MatMulInteger"] == ops["QuantizeLinear"] == ops["DequantizeLinear"] == 0


def test_cpu_form_keeps_decisions_and_boxes(tiny_onnx: Path, tiny_cpu: QuantizeResult, synth_root: Path) -> None:
    fp32 = open_model(tiny_onnx, backend="onnxruntime", threads=1)
    int8 = open_model(tiny_cpu.output, backend="onnxruntime", threads=1)
    seq = next(s for s in discover([synth_root]) if s.name == "synthB")  # held out: crops came from synthA
    try:
        comparison = compare_on_sequence(fp32, int8, seq, threshold=0.0)
    finally:
        fp32.close()
        int8.close()
    agreement = comparison.agreement
    assert agreement is not None and agreement.shape == (19, 3)
    assert agreement.mean(axis=0).min() >= 0.98
    assert np.mean(comparison.same_input.box_iou) >= 0.95


def test_target_options_and_inputs_are_checked(tiny_cpu: QuantizeResult) -> None:
    with pytest.raises(InputError, match="--target 'gpu' is not one of tensorrt, cpu"):
        QuantizeOptions(target="gpu")
    with pytest.raises(InputError, match="applies to --target tensorrt"):
        QuantizeOptions(target="cpu", method="entropy")
    with pytest.raises(ArtifactMismatchError, match="int8 model with INT8 nodes"):
        check_fp32_export(tiny_cpu.output)


def test_engine_needs_the_tensorrt_form(tiny_onnx: Path, synth_root: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    result = run_main(main, ["--model", str(tiny_onnx), "--data", str(synth_root), "--output",
                             str(tmp_path / "o.onnx"), "--target", "cpu", "--engine"], capsys)  # fmt: skip
    check_one_line_failure(result, 2, "grm-calibrate", ["grm-calibrate: error: ", "--target tensorrt form"])
    assert not (tmp_path / "o.onnx").exists()


def test_speed_line_names_the_form_the_noise_and_the_cpu() -> None:
    assert step_ratios([10.0, 20.0, 30.0], [5.0, 5.0, 10.0]) == pytest.approx((2.2, 3.0, 3.8))
    speed = SpeedResult(400.0, 200.0, 2, 20, {}, {}, (1.7, 2.0, 2.3), "Some CPU: AVX2 yes, VNNI no", "cpu")
    gt = np.tile([[20.0, 20.0, 40.0, 40.0]], (3, 1))
    same = FrameComparison(box_iou=[1.0, 1.0], max_abs={"score_map": 0.0}, sum_abs={"score_map": 0.0},
                           count={"score_map": 1})  # fmt: skip
    report = build_report([SequenceComparison("a", gt, gt, same, gt)], max_auc_drop=1.0, context={}, speed=speed)
    assert report["speed"]["cpu_features"] == "Some CPU: AVX2 yes, VNNI no" and report["speed"]["int8_target"] == "cpu"
    table = format_table(report)
    assert "FP32 400.0 ms, INT8 (cpu form) 200.0 ms, INT8 speed-up 2.00x (per-step 1.70-2.30x)" in table
    assert "CPU: Some CPU: AVX2 yes, VNNI no" in table


def test_speed_table_times_several_models_from_a_crop_cache(
    tiny_onnx: Path, tiny_int8: QuantizeResult, tiny_cpu: QuantizeResult, calib_set, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    crops = save(calib_set, tmp_path)
    models = [str(p) for p in (tiny_onnx, tiny_int8.output, tiny_cpu.output)]
    speed_main(["--crops", str(crops), "--threads", "1", "--repeats", "3", *models])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("CPU: ") and "1 thread, median of 3 interleaved calls" in lines[0]
    rows = [line.split(" | ") for line in lines if line.startswith("| tiny")]
    assert [r[1] for r in rows] == ["fp32", "int8 (tensorrt form)", "int8 (cpu form)"]
    assert rows[0][3] == "1.00x" and all(float(r[2]) > 0 for r in rows)
