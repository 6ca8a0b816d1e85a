"""The export pipeline's engine branch on CPU: TensorRT build and backend replaced by fakes around ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from grm.export import parity, pipeline
from grm.export.metadata import read_metadata
from grm.runtime import contract
from grm.runtime.backends.trt_build import BuildPlan, EngineBuild
from grm.runtime.errors import ParityError


class _OrtAsEngine:
    """Stands in for the runtime's TensorRT backend: runs the ONNX next to the plan, optionally perturbed."""

    def __init__(self, onnx_path: Path, offset_error: float) -> None:
        self.run_onnx = parity.ort_runner(parity.open_session(onnx_path, threads=1))
        self.metadata = read_metadata(onnx_path)
        self.offset_error = offset_error
        self.closed = False

    def run(self, feeds):  # noqa: ANN001, ANN201 (Backend.run)
        out = dict(self.run_onnx(feeds))
        out[contract.OFFSET_MAP] = out[contract.OFFSET_MAP] + np.float32(self.offset_error)
        return out

    def close(self) -> None:
        self.closed = True


def _fake_engine(monkeypatch: pytest.MonkeyPatch, offset_error: float) -> list[_OrtAsEngine]:
    opened: list[_OrtAsEngine] = []
    built_from: dict[Path, Path] = {}

    def build_engine(onnx_path, plan_path, workspace_bytes, timing_cache):  # noqa: ANN001, ANN202
        assert Path(onnx_path).is_file() and not Path(onnx_path).name.startswith(".")  # the verified, final ONNX
        built_from[Path(plan_path)] = Path(onnx_path)
        Path(plan_path).write_bytes(b"plan")
        manifest = Path(str(plan_path) + ".json")
        manifest.write_text("{}")
        return EngineBuild(Path(plan_path), manifest, "10.13.0", BuildPlan(False, False, "fp32"))

    def open_model(path, backend, config):  # noqa: ANN001, ANN202
        assert backend == "tensorrt" and config == "tiny"
        opened.append(_OrtAsEngine(built_from[Path(path)], offset_error))
        return opened[-1]

    monkeypatch.setattr(pipeline, "import_tensorrt", lambda: None)
    monkeypatch.setattr(pipeline, "gpu_info", lambda: ("Fake GPU", (8, 6)))
    monkeypatch.setattr(pipeline, "build_engine", build_engine)
    monkeypatch.setattr(pipeline, "open_model", open_model)
    return opened


def test_engine_is_verified_against_pytorch(
    monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    opened = _fake_engine(monkeypatch, offset_error=0.0)
    options = pipeline.ExportOptions(config="tiny", checkpoint=tiny_checkpoint, output=tmp_path / "t.plan", threads=1)
    result = pipeline.run_export(options)
    assert result.onnx.path == tmp_path / "t.onnx" and result.report is not None and result.report.passed
    report = result.engine_report
    assert report is not None and report.passed and opened[0].closed
    assert report.subject == "TensorRT 10.13.0 engine" and report.data_source.startswith("synthetic")
    assert all(s.decision_agreement is None for s in report.thresholds)  # the plan has no decisions output
    assert "decisions n/a" in report.summary_lines()[1]
    saved = json.loads((tmp_path / "t.plan.parity.json").read_text())
    assert saved["passed"] and saved["model"] == str(tmp_path / "t.plan")
    assert (tmp_path / "t.parity.json").is_file()  # the ONNX report is separate


def test_engine_beyond_tolerance_fails(monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A plan that fails parity never reaches t.plan: it is kept as t.parity-failed.plan beside its report."""
    _fake_engine(monkeypatch, offset_error=3e-3)
    options = pipeline.ExportOptions(config="tiny", checkpoint=tiny_checkpoint, output=tmp_path / "t.plan", threads=1)
    with pytest.raises(
        ParityError,
        match=r"TensorRT 10.13.0 engine .*t\.parity-failed\.plan disagrees with PyTorch: offset_map max abs",
    ):
        pipeline.run_export(options)
    report = json.loads((tmp_path / "t.parity-failed.plan.parity.json").read_text())
    assert report["passed"] is False and report["model"] == str(tmp_path / "t.parity-failed.plan")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "t.onnx",
        "t.parity-failed.plan",
        "t.parity-failed.plan.json",
        "t.parity-failed.plan.parity.json",
        "t.parity.json",
    ]  # the ONNX passed and is kept; no plan at t.plan, no temporary file left


def test_cli_notes_each_stage_and_ends_with_every_output_and_the_next_command(
    monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Stage notes go to stdout as each stage starts; off a terminal nothing else is drawn (stderr stays empty);
    the last lines name every file written and the grm-run line for the new engine, which the real CLI parses."""
    from typer.testing import CliRunner

    from grm.export.cli import app
    from tests.badinput import Hint, check_hint

    _fake_engine(monkeypatch, offset_error=0.0)
    plan = tmp_path / "t.plan"
    result = CliRunner().invoke(
        app, ["--config", "tiny", "--checkpoint", str(tiny_checkpoint), "--output", str(plan), "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    notes = [line.removeprefix("grm-export: ") for line in lines if line.startswith("grm-export: ")]
    stages = [
        "loading PyTorch and the ONNX exporter",
        "loading the tiny weights",
        "cutting parity crops",
        "exporting tiny to ONNX (fp32, opset 18)",
        "checking the exported graph",
        "parity of ONNX Runtime (CPU) against PyTorch",
        "parity passed",
        "building the TensorRT engine",
        "parity of the TensorRT engine against PyTorch",
        "parity passed",
    ]
    assert len(notes) == len(stages) and all(n.startswith(s) for n, s in zip(notes, stages, strict=True)), notes
    assert "at thresholds 0, 0.4, 0.55, 0.6" in notes[5]
    assert lines[-6:] == [
        f"wrote {tmp_path / 't.onnx'} (fp32, opset 18)",
        f"wrote {tmp_path / 't.parity.json'} (parity report)",
        f"wrote {plan} (TensorRT 10.13.0 engine)",
        f"wrote {plan}.json (engine manifest)",
        f"wrote {plan}.parity.json (engine parity report)",
        f"next: grm-run SOURCE --model {plan} --box x,y,w,h",
    ]
    assert all(Path(line.split(" ")[1]).is_file() for line in lines[-6:-1])
    assert result.stdout.count("  PASS") == 2  # the ONNX and the engine parity summaries
    check_hint(Hint("grm-export output", lines[-1].removeprefix("next: ")))
