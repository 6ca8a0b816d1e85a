"""grm-export on bad input, full or read-only outputs, missing extras and Ctrl-C: one line, the documented exit
status, no model at its final path that has not passed parity, and files that existed before left byte-identical.

Read-only outputs use :func:`tests.badinput.read_only_folder`: a read-only tmpfs mount where this machine allows
mounting, else an EROFS injected at Python's open/mkdir/rename (these machines run as root, which chmod does not
stop). "No space left" comes from a real ``/dev/full`` behind a symlink named like the output.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import zipfile
from pathlib import Path

import pytest

from grm.export import main, parity, pipeline
from grm.export.pipeline import ExportOptions, run_export
from grm.runtime.errors import Interrupted
from tests.badinput import (
    check_hint,
    check_one_line_failure,
    check_untouched,
    find_hints,
    hide_modules_env,
    read_only_folder,
    run_interrupted,
    run_main,
    run_process,
    snapshot,
)

PROG = "grm-export"
REPO = Path(__file__).resolve().parents[2]


def _bad_checkpoints(folder: Path, good: Path) -> dict[str, Path]:
    """Damaged checkpoints a user may have: interrupted download, empty file, folder, foreign zip, garbage pickle."""
    folder.mkdir()
    files = {
        "truncated": folder / "truncated.pth.tar", "empty": folder / "empty.pth.tar",
        "zip-of-garbage": folder / "garbage.zip", "pickle-of-garbage": folder / "garbage.pth.tar",
        "half-a-torch-zip": folder / "half.pth.tar", "text": folder / "notes.pth.tar",
        "pickled-list": folder / "list.pth.tar",
    }  # fmt: skip
    files["truncated"].write_bytes(b"\x80\x04junk")
    files["empty"].write_bytes(b"")
    with zipfile.ZipFile(files["zip-of-garbage"], "w") as z:
        z.writestr("readme.txt", "not weights")
    files["pickle-of-garbage"].write_bytes(b"\x80\x04" + bytes(range(7, 200)))
    data = good.read_bytes()
    files["half-a-torch-zip"].write_bytes(data[: len(data) // 2])
    files["text"].write_text("hello")
    files["pickled-list"].write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    files["folder"] = folder / "run"
    files["folder"].mkdir()
    return files


CHECKPOINT_CASES = {
    "truncated": "looks truncated or corrupt", "empty": "is empty (0 bytes)", "zip-of-garbage": "not a PyTorch",
    "pickle-of-garbage": "looks truncated or corrupt", "half-a-torch-zip": "looks truncated",
    "text": "is not a PyTorch checkpoint", "pickled-list": "looks truncated or corrupt", "folder": "is a folder",
    "missing": "checkpoint not found",
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_damaged_checkpoint_is_one_line(case: str, tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    files = _bad_checkpoints(tmp_path / "in", tiny_checkpoint)
    checkpoint = files.get(case, tmp_path / "in" / "missing.pth.tar")
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)
    result = run_main(
        main, ["--config", "tiny", "--checkpoint", str(checkpoint), "--output", str(out / "m.onnx")], capsys
    )
    check_one_line_failure(result, 2, PROG, ["grm-export: error: ", str(checkpoint), CHECKPOINT_CASES[case]])
    check_untouched(before, tmp_path)


OPTION_CASES: dict[str, tuple[list[str], str]] = {
    "no-config": (["--fp16"], "--config is required"),
    "unknown-config": (["--config", "vitb256"], "did you mean 'vitb_256'"),
    "opset-too-old": (["--config", "tiny", "--opset", "17"], "opset 17 is not supported"),
    "opset-too-new": (["--config", "tiny", "--opset", "22"], "opset 22 is not supported"),
    "opset-not-a-number": (["--config", "tiny", "--opset", "x"], "--opset"),
    "output-suffix": (["--config", "tiny", "--output", "m.txt"], "must end in .onnx, .plan or .engine"),
    "output-stdout": (["--config", "tiny", "--output", "-"], "must end in .onnx, .plan or .engine"),
    "workspace-zero": (["--config", "tiny", "--workspace", "0"], "--workspace"),
    "threads-negative": (["--config", "tiny", "--threads", "-1"], "--threads"),
    "attention": (["--config", "tiny", "--attention", "slow"], "attention 'slow'"),
    "unknown-option": (["--config", "tiny", "--precision", "fp32"], "--precision"),
    "parity-data-missing": (["--config", "tiny", "--parity-data", "nowhere"], "parity data folder not found"),
    "fetch-nothing": (["fetch"], "exactly one of --from-zip PATH or --url URL"),
    "fetch-missing-zip": (["fetch", "--from-zip", "none.zip"], "release archive not found"),
    "fetch-url-no-config": (["fetch", "--url", "http://127.0.0.1:9/w.pth.tar"], "needs exactly one --config"),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_bad_option_is_one_line_before_anything_is_written(
    case: str, tiny_checkpoint: Path, tmp_path: Path, capsys, monkeypatch
) -> None:  # noqa: ANN001
    args, fragment = OPTION_CASES[case]
    if "--config" in args and args[0] != "fetch":
        args = [*args, "--checkpoint", str(tiny_checkpoint)]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRM_HOME", str(tmp_path / "home"))
    (tmp_path / "grm_tiny.onnx").write_bytes(b"an older export")
    before = snapshot(tmp_path)
    result = run_main(main, args, capsys)
    check_one_line_failure(result, 2, PROG, [fragment])
    check_untouched(before, tmp_path)


def test_output_that_is_a_folder(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    (tmp_path / "m.onnx").mkdir()
    (tmp_path / "m.onnx" / "keep.txt").write_text("mine")
    before = snapshot(tmp_path)
    result = run_main(
        main, ["--config", "tiny", "--checkpoint", str(tiny_checkpoint), "--output", str(tmp_path / "m.onnx")], capsys
    )
    check_one_line_failure(result, 2, PROG, [f"cannot write {tmp_path / 'm.onnx'}: it is a folder"])
    check_untouched(before, tmp_path)


@pytest.mark.parametrize("output", ["m.onnx", "sub/m.onnx", "m.plan"])
def test_read_only_output_folder(output: str, tiny_checkpoint: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    """Fails in one line before the export starts (mount or injected EROFS, see the module docstring)."""
    if output.endswith(".plan"):  # the engine branch checks TensorRT first: pretend it is there
        monkeypatch.setattr(pipeline, "import_tensorrt", lambda: None)
        monkeypatch.setattr(pipeline, "gpu_info", lambda: ("Fake GPU", (8, 6)))
    target = tmp_path / "ro" / output
    with read_only_folder(tmp_path / "ro", monkeypatch) as how:
        result = run_main(
            main, ["--config", "tiny", "--checkpoint", str(tiny_checkpoint), "--output", str(target)], capsys
        )
        line = check_one_line_failure(result, 2, PROG, ["Read-only file system"])
        assert str(target.with_suffix(".onnx")) in line, (how, line)
        assert not any((tmp_path / "ro").iterdir())


def test_stopped_export_keeps_nothing_even_when_the_exporter_wraps_ctrl_c(
    tiny_checkpoint: Path,
    tmp_path: Path,
    capsys,
    monkeypatch,  # noqa: ANN001
) -> None:
    """The dynamo exporter reports a KeyboardInterrupt as its own TorchExportError ("report a bug to PyTorch")."""

    class TorchExportError(RuntimeError):
        pass

    def wrapped(model, output, **kwargs):  # noqa: ANN001, ANN202
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise TorchExportError("Failed to export the model; please report a bug to PyTorch") from e

    monkeypatch.setattr(pipeline, "export_onnx", wrapped)
    out = tmp_path / "m.onnx"
    result = run_main(main, ["--config", "tiny", "--checkpoint", str(tiny_checkpoint), "--output", str(out)], capsys)
    check_one_line_failure(result, 130, PROG, [f"grm-export: interrupted: nothing was written to {out}"])
    assert list(tmp_path.iterdir()) == []


def test_a_swallowed_ctrl_c_still_stops_the_export(tiny_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    """A library that catches the KeyboardInterrupt and carries on: the signal is seen at the next step."""

    def swallowing(model, output, **kwargs):  # noqa: ANN001, ANN202
        try:
            os.kill(os.getpid(), signal.SIGINT)  # the handler raises at the next bytecode, inside this try
        except KeyboardInterrupt:
            pass
        Path(output).write_bytes(b"a model nobody checked")
        return None

    monkeypatch.setattr(pipeline, "export_onnx", swallowing)
    out = tmp_path / "m.onnx"
    with pytest.raises(Interrupted, match="nothing was written"):
        run_export(ExportOptions(config="tiny", checkpoint=tiny_checkpoint, output=out))
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_parity_failure_keeps_the_model_only_under_a_failed_name(
    tiny_checkpoint: Path,
    tmp_path: Path,
    capsys,
    monkeypatch,  # noqa: ANN001
) -> None:
    strict = parity.Tolerance(
        max_abs=dict.fromkeys(parity.TOLERANCES["fp32"].max_abs, 0.0), min_decision_agreement=1.0, min_mean_iou=1.0
    )
    real_compare = parity.compare

    def off_by_a_little(run, *args, **kwargs):  # noqa: ANN001, ANN202
        return real_compare(lambda feeds: {k: v + 1e-3 for k, v in run(feeds).items()}, *args, **kwargs)

    monkeypatch.setattr(parity, "TOLERANCES", {**parity.TOLERANCES, "fp32": strict})
    monkeypatch.setattr(parity, "compare", off_by_a_little)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"the model that passed yesterday")
    (tmp_path / "m.parity.json").write_text('{"passed": true}')
    before = snapshot(tmp_path)
    result = run_main(
        main, ["--config", "tiny", "--checkpoint", str(tiny_checkpoint), "--output", str(out), "--threads", "1"], capsys
    )
    check_one_line_failure(
        result,
        1,
        PROG,
        [
            "disagrees with PyTorch",
            "m.parity-failed.onnx",
            "details in " + str(tmp_path / "m.parity-failed.parity.json"),
        ],
    )
    failed, report = tmp_path / "m.parity-failed.onnx", tmp_path / "m.parity-failed.parity.json"
    check_untouched(before, tmp_path, allowed_new=[failed, report])
    assert json.loads(report.read_text())["model"] == str(failed) and failed.stat().st_size > 10_000


def test_full_disk_behind_the_output_name(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """The output is a symlink to /dev/full: written in place (never replaced), and ENOSPC is exit 2."""
    out = tmp_path / "m.onnx"
    out.symlink_to("/dev/full")
    before = snapshot(tmp_path)
    result = run_main(
        main, ["--config", "tiny", "--checkpoint", str(tiny_checkpoint), "--output", str(out), "--threads", "1"], capsys
    )
    check_one_line_failure(result, 2, PROG, [f"cannot write {out}: no space left on the device"])
    assert out.is_symlink() and os.readlink(out) == "/dev/full"
    check_untouched(before, tmp_path)


# --- real processes: missing extras and Ctrl-C ------------------------------------------------------------------


@pytest.mark.parametrize(
    "hidden, argv",
    [
        (["torch"], ["--help"]),
        (["onnx"], ["--help"]),
        (["torch", "onnx"], ["--config", "tiny"]),
        (["onnxscript"], ["fetch"]),
    ],
)
def test_missing_extra_is_one_line_naming_it(
    hidden: list[str], argv: list[str], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = hide_modules_env(tmp_path_factory.mktemp("hide"), hidden)
    result = run_process(PROG, argv, tmp_path, env=env, timeout=120)
    check_one_line_failure(result, 2, PROG, [hidden[0], 'pip install "grm-tracker[export]"'])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "at, expected",
    [
        ("grm.export.parity:compare", "interrupted: nothing was written to"),  # during parity
        ("grm.export.static_model:StaticGrm.forward", "interrupted: nothing was written to"),  # inside the exporter
        ("grm.export.pipeline:load_checkpoint", "interrupted:"),  # before anything started
    ],
)
def test_ctrl_c_leaves_the_previous_model_alone(at: str, expected: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"the model that passed yesterday")
    before = snapshot(tmp_path)
    result = run_interrupted(
        PROG,
        ["--config", "tiny", "--checkpoint", str(tiny_checkpoint), "--output", str(out), "--threads", "1"],
        tmp_path,
        at,
        env={"OMP_NUM_THREADS": "1"},
    )
    check_one_line_failure(result, 130, PROG, [expected])
    check_untouched(before, tmp_path)


# --- hints --------------------------------------------------------------------------------------------------------

HINTS = find_hints(REPO, ["export", "calibration", "train"])


@pytest.mark.parametrize("hint", HINTS, ids=[h.where for h in HINTS])
def test_suggested_command_lines_parse(hint) -> None:  # noqa: ANN001
    check_hint(hint)


def test_hints_were_found() -> None:
    lines = {h.line for h in HINTS}
    assert any(line.startswith("grm-export fetch --from-zip") for line in lines), lines
    assert any(line.startswith("grm-export --config") for line in lines), lines
    # the closing "next:" lines of grm-export, grm-calibrate and grm-train
    for start in (
        "grm-run SOURCE --model X --box",
        "grm-bench speed --engine X --engine X --source SOURCE --box",
        "grm-train evaluate X --val-root X",
        "grm-export --config X --checkpoint X",
    ):
        assert any(line.startswith(start) for line in lines), (start, lines)
