"""Batched exports (``grm-export --batch N`` / ``--batch dynamic``) of the tiny fixture model.

Every row of a batched call must be what the batch-1 PyTorch model computes for that row's own crops and division
threshold (thresholds mixed within one call), within the parity table's limits; the metadata, FP16, INT8
calibration, TensorRT profile builds and the TensorRT backend's batch handling are checked as well (TensorRT
through the fakes in tests/runtime/trt_fakes.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from grm.calibration.collect import CalibrationSet
from grm.calibration.quantize import CropReader, QuantizeOptions, quantize
from grm.export import parity
from grm.export.cli import app, batch_profile
from grm.export.metadata import read_metadata
from grm.export.onnx_lint import lint
from grm.export.options import parse_batch
from grm.export.parity_data import crop_pairs
from grm.export.to_onnx import export_onnx
from grm.runtime import contract
from grm.runtime.backends import open_model
from grm.runtime.backends.cuda_memory import CudaPythonApi
from grm.runtime.backends.manifest import EngineManifest, read_manifest, rebuild_command, write_manifest
from grm.runtime.backends.trt import open_plan
from grm.runtime.backends.trt_build import BatchProfile, build_engine
from grm.runtime.errors import ConfigError, InputError
from tests.badinput import check_one_line_failure
from tests.export.test_cli import _main
from tests.runtime.trt_fakes import PLAN_BYTES, Engine, FakeCudart, brightness_outputs, make_trt, tiny_tensors

THRESHOLDS = parity.DEFAULT_THRESHOLDS
GPU = ("NVIDIA Fake GPU", (8, 6))
PROFILE = BatchProfile(1, 2, 3)


@pytest.fixture(scope="module")
def batch2(tiny_model, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 (OnnxExport)
    """``--batch 2``, FP32, with the decisions output."""
    return export_onnx(tiny_model, tmp_path_factory.mktemp("b2") / "grm_tiny_b2.onnx", with_decisions=True, batch=2)


@pytest.fixture(scope="module")
def dynamic(tiny_model, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 (OnnxExport)
    """``--batch dynamic --batch-min 1 --batch-opt 2 --batch-max 3``, FP32, with the decisions output."""
    out = tmp_path_factory.mktemp("bdyn") / "grm_tiny_bdyn.onnx"
    return export_onnx(tiny_model, out, with_decisions=True, batch=0, batch_profile=PROFILE)


@pytest.fixture(scope="module")
def pairs(tiny_model):  # noqa: ANN201 (list[CropPair])
    return crop_pairs(tiny_model.config.tracker, None)[0]


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _stack(pairs, thresholds) -> dict[str, np.ndarray]:  # noqa: ANN001
    feeds = [p.feeds(t) for p, t in zip(pairs, thresholds, strict=True)]
    return {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}


def _reference(model, pair, threshold: float) -> dict[str, np.ndarray]:  # noqa: ANN001
    return parity._reference(model, pair.feeds(threshold), threshold)


def _assert_rows_match(got, model, pairs, thresholds) -> None:  # noqa: ANN001
    """Row k of ``got`` equals the batch-1 PyTorch outputs of pair k at threshold k (fp32 parity limits)."""
    limits = parity.TOLERANCES["fp32"].max_abs
    for row, (pair, threshold) in enumerate(zip(pairs, thresholds, strict=True)):
        ref = _reference(model, pair, threshold)
        for name, limit in limits.items():
            assert np.abs(got[name][row : row + 1] - ref[name]).max() <= limit, (row, name)
        if contract.DECISIONS in got:
            np.testing.assert_array_equal(got[contract.DECISIONS][row : row + 1], ref[contract.DECISIONS])


def test_static_batch_graph_metadata_and_lint(batch2) -> None:
    model = onnx.load(str(batch2.path))
    io = {v.name: _dims(v) for v in [*model.graph.input, *model.graph.output]}
    assert io[contract.THRESHOLD] == [2] and io[contract.SEARCH] == [2, 3, 128, 128]
    assert io[contract.SCORE_MAP] == [2, 1, 8, 8] and io[contract.DECISIONS] == [2, 3, 64]
    meta = read_metadata(batch2.path)
    assert meta.batch == 2 and not meta.dynamic_batch and "batch_profile" not in meta.extra
    assert lint(batch2.path) == []


def test_dynamic_batch_graph_metadata_and_lint(dynamic) -> None:
    model = onnx.load(str(dynamic.path))
    assert all(_dims(v)[0] == "batch" for v in [*model.graph.input, *model.graph.output])
    assert _dims(model.graph.input[1]) == ["batch", 3, 128, 128]
    meta = read_metadata(dynamic.path)
    assert meta.batch == 0 and meta.dynamic_batch and meta.extra["batch_profile"] == {"min": 1, "opt": 2, "max": 3}
    assert lint(dynamic.path, dynamic_batch=True) == []
    static_rules = " ".join(str(i) for i in lint(dynamic.path))  # the static lint still rejects it
    assert "search: has a non-static shape ['batch', 3, 128, 128]" in static_rules and "op Shape" in static_rules


@pytest.mark.parametrize("which", ["batch2", "dynamic"])
def test_mixed_thresholds_in_one_call_match_batch1_pytorch(which: str, request, tiny_model, pairs) -> None:  # noqa: ANN001
    exported = request.getfixturevalue(which)
    run = parity.ort_runner(parity.open_session(exported.path, threads=1))
    rows = parity.parity_batch(exported.metadata)
    assert rows == (2 if which == "batch2" else 3)
    # one crop at thresholds 0 and 0.6 in the same call: each row follows its own threshold
    same = [pairs[0]] * rows
    thresholds = [0.0, 0.6, 0.4][:rows]
    got = run(_stack(same, thresholds))
    _assert_rows_match(got, tiny_model, same, thresholds)
    assert (got[contract.DECISIONS][0] != got[contract.DECISIONS][1]).any()  # the thresholds do differ here
    # different crops and thresholds, and a shorter call (padded for the static model)
    mixed, mixed_thresholds = [pairs[1], pairs[2], pairs[3]][:rows], [0.55, 0.0, 0.6][:rows]
    _assert_rows_match(run(_stack(mixed, mixed_thresholds)), tiny_model, mixed, mixed_thresholds)
    short = run(_stack(pairs[3:], [0.4]))
    assert short[contract.SCORE_MAP].shape == (1, 1, 8, 8)
    _assert_rows_match(short, tiny_model, pairs[3:], [0.4])


@pytest.mark.parametrize("which", ["batch2", "dynamic"])
def test_parity_report_of_a_batched_model(which: str, request, tiny_model, pairs) -> None:  # noqa: ANN001
    exported = request.getfixturevalue(which)
    batch = parity.parity_batch(exported.metadata)
    run = parity.ort_runner(parity.open_session(exported.path, threads=1))
    calls: list[list[float]] = []

    def counting(feeds):  # noqa: ANN001, ANN202
        calls.append(feeds[contract.THRESHOLD].tolist())
        return run(feeds)

    stats = parity.compare(counting, tiny_model, pairs, batch=batch)
    assert parity.failures(stats, parity.TOLERANCES["fp32"]) == []
    assert [s.threshold for s in stats] == list(THRESHOLDS) and all(s.decision_agreement == 1.0 for s in stats)
    assert len(calls) == -(-len(pairs) * len(THRESHOLDS) // batch)
    assert all(len(set(c)) == len(c) for c in calls)  # every call mixes thresholds
    report = parity.build_report(exported.path, "fp32", stats, pairs, "synthetic", batch=batch)
    assert json.loads(report.to_json())["batch"] == batch
    assert f"{batch} per call with mixed thresholds" in report.summary_lines()[0]


def test_mixed_jobs_cover_every_pair_and_threshold_once() -> None:
    jobs = parity.mixed_jobs(4, 4)
    assert sorted(jobs) == [(i, t) for i in range(4) for t in range(4)]
    assert all(a[0] != b[0] and a[1] != b[1] for a, b in zip(jobs, jobs[1:], strict=False))


@pytest.mark.parametrize("which", ["batch2", "dynamic"])
def test_onnxruntime_backend_runs_batched_models(which: str, request, tiny_model, pairs) -> None:  # noqa: ANN001
    exported = request.getfixturevalue(which)
    backend = open_model(exported.path, threads=1)
    try:
        count = 2 if which == "batch2" else 3
        thresholds = [0.6, 0.0, 0.4][:count]
        _assert_rows_match(backend.run(_stack(pairs[:count], thresholds)), tiny_model, pairs[:count], thresholds)
        if which == "batch2":
            with pytest.raises(InputError, match="3 template/search pairs given to .* whose batch is 2"):
                backend.run(_stack(pairs[:3], [0.0] * 3))
    finally:
        backend.close()


def test_fp16_batch_through_the_cli(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "grm_tiny_b2_fp16.onnx"
    args = ["--config", "tiny", "--checkpoint", str(tiny_checkpoint), "--fp16", "--batch", "2", "--output", str(out)]
    result = CliRunner().invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (fp16, opset 18, batch 2)" in result.stdout
    assert "2 per call with mixed thresholds" in result.stdout and "  PASS" in result.stdout
    report = json.loads(out.with_name("grm_tiny_b2_fp16.parity.json").read_text())
    assert report["passed"] and report["batch"] == 2 and report["precision"] == "fp16"
    meta = read_metadata(out)
    assert meta.batch == 2 and meta.precision == "fp16"
    assert [_dims(v)[0] for v in onnx.load(str(out)).graph.input] == [2, 2, 2]


def test_batch_options_are_checked(tiny_checkpoint: Path, tmp_path: Path) -> None:
    base = ["--config", "tiny", "--checkpoint", str(tiny_checkpoint), "--output", str(tmp_path / "x.onnx")]
    for bad in ("0", "two", "-3"):
        check_one_line_failure(_main([*base, "--batch", bad]), 2, "grm-export",
                               [f"--batch '{bad}' must be a whole number >= 1 or 'dynamic'"])  # fmt: skip
    check_one_line_failure(_main([*base, "--batch", "2", "--batch-max", "4"]), 2, "grm-export",
                           ["(min 1, opt 4, max 4) shape a TensorRT engine of a dynamic batch; add --batch dynamic"])  # fmt: skip
    check_one_line_failure(_main([*base, "--batch", "dynamic", "--batch-min", "4", "--batch-opt", "2"]), 2,
                           "grm-export", ["batch profile min 4, opt 2, max 16 must be whole numbers"])  # fmt: skip
    assert not list(tmp_path.iterdir())
    assert parse_batch("dynamic") == 0 and parse_batch("8") == 8
    assert batch_profile(None, None, None) is None
    assert batch_profile(None, None, 2) == BatchProfile(1, 2, 2)
    assert batch_profile(4, None, None) == BatchProfile(4, 4, 16)
    assert batch_profile(None, 32, None) == BatchProfile(1, 32, 32)


# ------------------------------------------------------------------------------------------------ INT8


def _calibration_set(pairs) -> CalibrationSet:  # noqa: ANN001
    return CalibrationSet(
        templates=np.concatenate([p.template.image for p in pairs[:1]]),
        search=np.concatenate([p.search for p in pairs[:3]]),
        template_index=np.zeros(3, np.int32),
        threshold=0.0,
        manifest={"hash": "f" * 64},
    )


def test_calibration_feeds_fill_the_models_batch(pairs) -> None:
    calib = _calibration_set(pairs)
    reader = CropReader(calib, range(3), batch=2)
    first, second = reader.get_next(), reader.get_next()
    assert reader.get_next() is None
    np.testing.assert_array_equal(first[contract.SEARCH], calib.search[:2])
    np.testing.assert_array_equal(second[contract.SEARCH], calib.search[[2, 2]])  # padded with its last crop
    assert second[contract.THRESHOLD].shape == (2,)
    assert CropReader(calib, range(3), batch=0).get_next()[contract.SEARCH].shape == (1, 3, 128, 128)


@pytest.mark.parametrize("which", ["batch2", "dynamic"])
def test_int8_calibration_of_batched_models(which: str, request, pairs, tmp_path: Path) -> None:  # noqa: ANN001
    exported = request.getfixturevalue(which)
    options = QuantizeOptions(preprocess=False)
    result = quantize(exported.path, _calibration_set(pairs), tmp_path / "int8.onnx", options)
    assert result.metadata.batch == exported.metadata.batch and result.metadata.precision == "int8"
    assert result.metadata.extra.get("batch_profile") == exported.metadata.extra.get("batch_profile")
    int8, fp32 = open_model(result.output, threads=1), open_model(exported.path, threads=1)
    try:
        feeds = _stack(pairs[:2], [0.0, 0.6])
        got, ref = int8.run(feeds), fp32.run(feeds)
        assert got[contract.SCORE_MAP].shape == (2, 1, 8, 8)
        assert np.abs(got[contract.SCORE_MAP] - ref[contract.SCORE_MAP]).max() < 0.2
    finally:
        int8.close()
        fp32.close()


# -------------------------------------------------------------------------------------------- TensorRT


@pytest.mark.parametrize("version", ["10.13.0.35", "11.0.0.1"])
def test_tensorrt_builds_static_and_dynamic_engines(batch2, dynamic, tmp_path: Path, version: str) -> None:
    trt = make_trt(version=version)
    static = build_engine(batch2.path, tmp_path / "b2.plan", trt=trt, gpu=lambda: GPU)
    assert trt.state.profiles == []
    assert read_manifest(static.plan).metadata.batch == 2
    assert "--batch 2 --engine" in rebuild_command(static.plan, read_manifest(static.plan).metadata)

    build_engine(dynamic.path, tmp_path / "dyn.plan", trt=trt, gpu=lambda: GPU)  # the profile the export recorded
    rest = {"template": (3, 64, 64), "search": (3, 128, 128), "threshold": ()}
    assert trt.state.profiles == [{n: tuple((b, *r) for b in (1, 2, 3)) for n, r in rest.items()}]
    manifest = json.loads((tmp_path / "dyn.plan.json").read_text())
    assert manifest["batch"] == 0 and manifest["extra"]["batch_profile"] == {"min": 1, "opt": 2, "max": 3}

    plan = build_engine(dynamic.path, tmp_path / "dyn8.plan", profile=BatchProfile(2, 4, 8), trt=trt, gpu=lambda: GPU)
    assert trt.state.profiles[-1]["search"] == ((2, 3, 128, 128), (4, 3, 128, 128), (8, 3, 128, 128))
    meta = read_manifest(plan.plan).metadata
    assert meta.extra["batch_profile"] == {"min": 2, "opt": 4, "max": 8}
    assert "--batch dynamic --batch-min 2 --batch-opt 4 --batch-max 8 --engine" in rebuild_command(plan.plan, meta)
    with pytest.raises(ConfigError, match="static batch of 2; export with --batch dynamic"):
        build_engine(batch2.path, tmp_path / "bad.plan", profile=PROFILE, trt=trt, gpu=lambda: GPU)


def _plan(tmp_path: Path, metadata) -> Path:  # noqa: ANN001
    plan = tmp_path / "engine.plan"
    plan.write_bytes(PLAN_BYTES)
    write_manifest(
        plan,
        EngineManifest(
            metadata=metadata,
            tensorrt_version="10.13.0.35",
            gpu_name=GPU[0],
            compute_capability=GPU[1],
            plan_sha256=hashlib.sha256(PLAN_BYTES).hexdigest(),
        ),
    )
    return plan


def _feeds(count: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(count)
    return {"template": np.zeros((count, 3, 64, 64), np.float32),
            "search": rng.random((count, 3, 128, 128), dtype=np.float32),
            "threshold": np.linspace(0.3, 0.7, count, dtype=np.float32)}  # fmt: skip


def _open_engine(plan: Path, engine: Engine, cudart: FakeCudart):  # noqa: ANN202
    return open_plan(plan, trt=make_trt(engine), cuda=CudaPythonApi(cudart, native_handle=id))


def test_tensorrt_static_batch_engine(batch2, tmp_path: Path) -> None:
    engine = Engine(tiny_tensors(decisions=True, batch=2), lambda x: brightness_outputs(x, decisions=True))
    cudart = FakeCudart()
    backend = _open_engine(_plan(tmp_path, batch2.metadata), engine, cudart)
    try:
        assert backend.profile is None
        for count in (2, 1):  # one pair is padded to the engine's two
            out = backend.run(_feeds(count))
            expected = brightness_outputs(_feeds(count), decisions=True)
            assert out["score_map"].shape == (count, 1, 8, 8)
            np.testing.assert_allclose(out["score_map"], expected["score_map"], rtol=1e-6)
            np.testing.assert_array_equal(out["decisions"], expected["decisions"])
        with pytest.raises(InputError, match="3 template/search pairs given to .*engine.plan, whose batch is 2"):
            backend.run(_feeds(3))
    finally:
        backend.close()


def test_tensorrt_dynamic_engine_sets_shapes_within_its_profile(dynamic, tmp_path: Path) -> None:
    engine = Engine(tiny_tensors(decisions=True, batch=-1), lambda x: brightness_outputs(x, decisions=True),
                    profile=(2, 2, 3))  # fmt: skip
    cudart = FakeCudart()
    backend = _open_engine(_plan(tmp_path, dynamic.metadata), engine, cudart)
    try:
        assert backend.profile == BatchProfile(2, 2, 3)
        assert max(cudart.sizes()) == 3 * 3 * 128 * 128 * 4  # buffers hold the profile's max rows
        context = engine.contexts[0]
        for count, rows in ((3, 3), (1, 2)):  # one pair is padded to the profile's min
            context.shape_calls.clear()
            out = backend.run(_feeds(count))
            assert dict(context.shape_calls)["search"] == (rows, 3, 128, 128)
            assert dict(context.shape_calls)["threshold"] == (rows,)
            expected = brightness_outputs(_feeds(count), decisions=True)
            assert out["score_map"].shape == (count, 1, 8, 8)
            np.testing.assert_allclose(out["score_map"], expected["score_map"], rtol=1e-6)
            np.testing.assert_array_equal(out["decisions"], expected["decisions"])
        context.shape_calls.clear()
        out = backend.run(_feeds(2))  # the same two rows as the call before: the shapes stay set
        assert context.shape_calls == []
        np.testing.assert_allclose(out["score_map"], brightness_outputs(_feeds(2))["score_map"], rtol=1e-6)
        bad = {**_feeds(3), "threshold": np.zeros(2, np.float32)}  # refused after the first inputs got 3 rows
        with pytest.raises(InputError):
            backend.run(bad)
        context.shape_calls.clear()
        backend.run(_feeds(2))  # every input is set back to two rows
        assert {name for name, _ in context.shape_calls} == {"template", "search", "threshold"}
        with pytest.raises(InputError) as refused:
            backend.run(_feeds(4))
        message = str(refused.value)
        assert "\n" not in message
        assert "4 template/search pairs given to" in message
        assert "outside its TensorRT optimization profile (batch min 2, opt 2, max 3)" in message
    finally:
        backend.close()
