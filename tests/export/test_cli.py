"""grm-export: the happy path (via the FP16 session export, through typer's CliRunner) and every error path (through
the console script's ``main``, whose error boundary turns them into one line)."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grm.export import main
from grm.export.cli import app
from grm.export.pipeline import ExportOptions, default_onnx_name, output_paths
from grm.runtime.errors import ConfigError
from tests.badinput import Outcome, check_one_line_failure

runner = CliRunner()


def _main(args: list[str], env: dict[str, str] | None = None) -> Outcome:
    """``grm-export ARGS`` through the console script's error boundary, output captured like CliRunner's."""
    with runner.isolation(env=env) as (out, err, _):
        try:
            main(args)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        return Outcome(code, out.getvalue().decode(), err.getvalue().decode())


def _one_line_error(result: Outcome, *fragments: str) -> None:
    check_one_line_failure(result, 2, "grm-export", ["grm-export: error: ", *fragments])


def test_export_prints_summary_and_writes_report(tiny_fp16_cli) -> None:
    result, path = tiny_fp16_cli
    assert result.exit_code == 0, result.output
    assert f"wrote {path} (fp16, opset 18)" in result.stdout
    assert "parity fp16 ONNX (ONNX Runtime CPU) vs PyTorch fp32 on 8 crop pairs" in result.stdout
    assert result.stdout.count("  threshold ") == 4 and "  PASS" in result.stdout
    assert path.with_name("grm_tiny_fp16.parity.json").is_file()
    assert result.stdout.splitlines()[-2:] == [
        f"wrote {path.with_name('grm_tiny_fp16.parity.json')} (parity report)",
        f"next: grm-run SOURCE --model {path} --box x,y,w,h",
    ]


def test_engine_and_model_options_are_the_same_words_in_export_and_calibrate() -> None:
    """Building a TensorRT engine is the flag --engine in both commands; grm-calibrate takes its model as --model
    (grm-export takes a checkpoint, --checkpoint)."""
    import typer.main

    from grm.calibration.cli import app as calibrate_app

    def options(typer_app) -> dict[str, object]:  # noqa: ANN001
        command = typer.main.get_command(typer_app)
        return {opt: p for p in command.params for opt in p.opts}

    export, calibrate = options(app), options(calibrate_app)
    for found in (export, calibrate):
        assert found["--engine"].is_flag
    assert "--model" in calibrate and "--checkpoint" in export and "--model" not in export


def test_help_explains_weights_and_options() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("--config", "--checkpoint", "--output", "--fp16", "--engine", "--opset", "--no-verify", "--workspace",
                 "--with-decisions", "fetch --from-zip Trained_Models.zip", "vitb_256"):  # fmt: skip
        assert text in result.stdout, text


def test_missing_and_unknown_config() -> None:
    _one_line_error(_main(["--fp16"]), "--config is required", "vitb_256")
    _one_line_error(_main(["--config", "vitb256"]), "unknown config 'vitb256'", "did you mean 'vitb_256'")


def test_missing_weights_names_file_and_remedies(tmp_path: Path) -> None:
    result = _main(["--config", "vitb_256", "--fp16"], env={"GRM_HOME": str(tmp_path)})
    _one_line_error(result, str(tmp_path / "weights" / "vitb_256.pth.tar"), "--checkpoint PATH", "fetch --from-zip")


def test_bad_output_and_opset(tiny_checkpoint: Path, tmp_path: Path) -> None:
    base = ["--config", "tiny", "--checkpoint", str(tiny_checkpoint)]
    _one_line_error(_main([*base, "--output", str(tmp_path / "m.txt")]), "must end in .onnx, .plan or .engine")
    _one_line_error(_main([*base, "--opset", "17"]), "opset 17 is not supported")
    _one_line_error(_main([*base, "--checkpoint", str(tmp_path / "x.pth")]), "checkpoint not found")


def test_engine_without_tensorrt_fails_before_exporting(tiny_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    plan = tmp_path / "tiny.plan"
    result = _main(["--config", "tiny", "--checkpoint", str(tiny_checkpoint), "--output", str(plan)])
    _one_line_error(result, "needs the tensorrt package", "pip install tensorrt", "leaving out --engine")
    assert list(tmp_path.iterdir()) == []


def test_output_naming() -> None:
    assert default_onnx_name("vitb_256", fp16=True) == Path("grm_vitb_256_fp16.onnx")
    assert output_paths(ExportOptions(config="vitb_256")) == (Path("grm_vitb_256.onnx"), None)
    assert output_paths(ExportOptions(config="vitb_256", fp16=True, engine=True)) == (
        Path("grm_vitb_256_fp16.onnx"),
        Path("grm_vitb_256_fp16.plan"),
    )
    assert output_paths(ExportOptions(config="tiny", output=Path("a/t.engine"))) == (
        Path("a/t.onnx"),
        Path("a/t.engine"),
    )
    with pytest.raises(ConfigError):
        output_paths(ExportOptions(config="tiny", output=Path("t.pt")))


def test_fetch_from_zip_fills_the_store(tmp_path: Path) -> None:
    archive = tmp_path / "Trained_Models.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("Trained_Models/vitb_256_got_ep100/GRM_ep0100.pth.tar", b"weights")
    home = tmp_path / "home"
    result = runner.invoke(app, ["fetch", "--from-zip", str(archive)], env={"GRM_HOME": str(home)})
    assert result.exit_code == 0, result.output
    assert f"vitb_256_got: {home / 'weights' / 'vitb_256_got.pth.tar'}" in result.stdout
    assert (home / "weights" / "vitb_256_got.pth.tar").read_bytes() == b"weights"
    _one_line_error(_main(["fetch", "--from-zip", str(archive), "--config", "vitl_320"]), "holds no vitl_320_ep300")


def test_fetch_argument_errors(tmp_path: Path) -> None:
    _one_line_error(_main(["fetch"]), "exactly one of --from-zip PATH or --url URL")
    both = ["fetch", "--from-zip", "a.zip", "--url", "http://127.0.0.1:9/x.zip"]
    _one_line_error(_main(both), "exactly one of")
    _one_line_error(_main(["fetch", "--url", "http://127.0.0.1:9/w.pth.tar"]), "needs exactly one --config")
    _one_line_error(_main(["fetch", "--from-zip", str(tmp_path / "none.zip")]), "release archive not found")


def test_fetch_url_downloads_one_checkpoint_into_the_store(tmp_path: Path) -> None:
    (tmp_path / "srv").mkdir()
    payload = b"checkpoint bytes" * 1000
    (tmp_path / "srv" / "GRM_ep0300.pth.tar").write_bytes(payload)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = lambda *a, **k: Quiet(*a, directory=str(tmp_path / "srv"), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/GRM_ep0300.pth.tar"
        home = tmp_path / "home"
        args = ["fetch", "--url", url, "--config", "vitb_256", "--sha256", hashlib.sha256(payload).hexdigest()]
        result = runner.invoke(app, args, env={"GRM_HOME": str(home)})
        assert result.exit_code == 0, result.output
        assert (home / "weights" / "vitb_256.pth.tar").read_bytes() == payload
        bad = _main([*args[:5], "--sha256", "0" * 64], env={"GRM_HOME": str(tmp_path / "h2")})
        _one_line_error(bad, "expected 0000")
    finally:
        server.shutdown()
        server.server_close()
