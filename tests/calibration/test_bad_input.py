"""grm-calibrate on bad input, full or read-only outputs, missing extras and Ctrl-C: one line, the documented exit
status, no INT8 model at --output without its report, and files that existed before left byte-identical.

Read-only outputs use :func:`tests.badinput.read_only_folder` (a read-only tmpfs mount where this machine allows
mounting, else an EROFS injected at Python's open/mkdir/rename: these machines run as root, which chmod does not
stop). "No space left" comes from a real ``/dev/full`` behind a symlink named like the output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from grm.calibration import main
from tests.badinput import (
    check_one_line_failure,
    check_untouched,
    hide_modules_env,
    read_only_folder,
    run_interrupted,
    run_main,
    run_process,
    snapshot,
)

PROG = "grm-calibrate"

OPTION_CASES: dict[str, tuple[list[str], str]] = {
    "threshold-2": (["--threshold", "2"], "--threshold 2 must lie in [0, 1)"),
    "threshold-negative": (["--threshold", "-5"], "--threshold -5 must lie in [0, 1)"),
    "threshold-1": (["--threshold", "1"], "--threshold 1 must lie in [0, 1)"),
    "threshold-nan": (["--threshold", "nan"], "must lie in [0, 1)"),
    "threshold-text": (["--threshold", "high"], "--threshold"),
    "dataset-unknown": (["--dataset", "foo"], "unknown dataset 'foo'"),
    "dataset-typo": (["--dataset", "lasott"], "did you mean 'lasot'"),
    "threshold-and-dataset": (["--threshold", "0.4", "--dataset", "lasot"], "either --threshold or --dataset"),
    "samples-zero": (["--samples", "0"], "--samples"),
    "threads-negative": (["--threads", "-1"], "--threads"),
    "max-frames-1": (["--max-frames", "1"], "--max-frames"),
    "eval-frames-1": (["--eval-frames", "1"], "--eval-frames"),
    "max-auc-drop-nan": (["--max-auc-drop", "nan"], "--max-auc-drop must be a finite number"),
    "max-auc-drop-text": (["--max-auc-drop", "a lot"], "--max-auc-drop"),
    "unknown-option": (["--precision", "int8"], "--precision"),
    "holdout-unknown": (["--holdout", "nosuchsequence"], "nosuchsequence"),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_bad_option_is_one_line(
    case: str,
    tiny_onnx: Path,
    synth_root: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
    monkeypatch,
) -> None:  # noqa: ANN001
    extra, fragment = OPTION_CASES[case]
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "int8.onnx"
    out.write_bytes(b"yesterday's INT8 model")
    before = snapshot(tmp_path)
    args = ["--model", str(tiny_onnx), "--data", str(synth_root), "--output", str(out), "--samples", "4", *extra]
    check_one_line_failure(run_main(main, args, capsys), 2, PROG, [fragment])
    check_untouched(before, tmp_path)


def _bad_model(tmp_path: Path, case: str, tiny_int8) -> Path:  # noqa: ANN001
    if case == "missing":
        return tmp_path / "in" / "none.onnx"
    if case == "folder":
        (tmp_path / "in" / "model.onnx").mkdir(parents=True)
        return tmp_path / "in" / "model.onnx"
    path = tmp_path / "in" / "model.onnx"
    path.parent.mkdir(parents=True)
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("hello")
    elif case == "truncated":
        path.write_bytes(tiny_int8.output.read_bytes()[:1000])
    else:  # already INT8
        return tiny_int8.output
    return path


MODEL_CASES = {"missing": "model file not found", "folder": "model.onnx", "empty": "model.onnx",
               "text": "not an ONNX file", "truncated": "model.onnx",
               "int8": "calibration starts from the FP32 export"}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_bad_model_is_one_line(case: str, synth_root: Path, tmp_path: Path, tiny_int8, capsys) -> None:  # noqa: ANN001
    model = _bad_model(tmp_path, case, tiny_int8)
    out = tmp_path / "out" / "int8.onnx"
    before = snapshot(tmp_path)
    result = run_main(main, ["--model", str(model), "--data", str(synth_root), "--output", str(out)], capsys)
    check_one_line_failure(result, 2, PROG, [MODEL_CASES[case]])
    check_untouched(before, tmp_path)


@pytest.mark.parametrize("case", ["missing", "empty-folder", "file"])
def test_bad_data_is_one_line(case: str, tiny_onnx: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    if case == "empty-folder":
        data.mkdir()
    elif case == "file":
        data.write_text("not a sequence")
    before = snapshot(tmp_path)
    result = run_main(
        main, ["--model", str(tiny_onnx), "--data", str(data), "--output", str(tmp_path / "o.onnx")], capsys
    )
    check_one_line_failure(result, 2, PROG, [str(data)])
    check_untouched(before, tmp_path)


def test_output_that_is_a_folder(tiny_onnx: Path, synth_root: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    (tmp_path / "int8.onnx").mkdir()
    before = snapshot(tmp_path)
    result = run_main(
        main, ["--model", str(tiny_onnx), "--data", str(synth_root), "--output", str(tmp_path / "int8.onnx")], capsys
    )
    check_one_line_failure(result, 2, PROG, [f"cannot write {tmp_path / 'int8.onnx'}: it is a folder"])
    check_untouched(before, tmp_path)


def test_read_only_output_folder(tiny_onnx: Path, synth_root: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    """Fails before any crop is collected (mount or injected EROFS, see the module docstring)."""
    out = tmp_path / "ro" / "int8.onnx"
    with read_only_folder(tmp_path / "ro", monkeypatch) as how:
        result = run_main(
            main,
            [
                "--model",
                str(tiny_onnx),
                "--data",
                str(synth_root),
                "--output",
                str(out),
                "--cache-dir",
                str(tmp_path / "cache"),
            ],
            capsys,
        )
        check_one_line_failure(result, 2, PROG, [f"cannot write {out}", "Read-only file system"])
        assert not any((tmp_path / "ro").iterdir()), how
    assert not (tmp_path / "cache").exists()


def test_read_only_report_folder_leaves_no_model(
    tiny_onnx: Path,
    synth_root: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
    monkeypatch,
) -> None:  # noqa: ANN001
    """The report cannot be written: the INT8 model does not reach --output either (a model needs its report)."""
    out, report = tmp_path / "int8.onnx", tmp_path / "ro" / "r.json"
    with read_only_folder(tmp_path / "ro", monkeypatch):
        result = run_main(
            main,
            [
                "--model",
                str(tiny_onnx),
                "--data",
                str(synth_root),
                "--output",
                str(out),
                "--report",
                str(report),
                "--samples",
                "4",
                "--threads",
                "1",
                "--eval-frames",
                "4",
            ],
            capsys,
        )
        check_one_line_failure(result, 2, PROG, [f"cannot write {report}", "Read-only file system"])
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_full_disk_behind_the_output_name(tiny_onnx: Path, synth_root: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """--output is a symlink to /dev/full: written in place, never replaced; ENOSPC is exit 2 and no report."""
    out = tmp_path / "int8.onnx"
    out.symlink_to("/dev/full")
    before = snapshot(tmp_path)
    result = run_main(
        main,
        [
            "--model",
            str(tiny_onnx),
            "--data",
            str(synth_root),
            "--output",
            str(out),
            "--samples",
            "4",
            "--threads",
            "1",
            "--eval-frames",
            "4",
        ],
        capsys,
    )
    check_one_line_failure(result, 2, PROG, [f"cannot write {out}: no space left on the device"])
    assert out.is_symlink() and os.readlink(out) == "/dev/full"
    cache = sorted((tmp_path / "calibration-cache").iterdir())
    check_untouched(before, tmp_path, allowed_new=cache)


def test_failed_gate_leaves_the_previous_model_alone(tiny_onnx: Path, synth_root: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "int8.onnx"
    out.write_bytes(b"yesterday's INT8 model")
    before = snapshot(tmp_path)
    result = run_main(
        main,
        [
            "--model",
            str(tiny_onnx),
            "--data",
            str(synth_root),
            "--output",
            str(out),
            "--samples",
            "4",
            "--threads",
            "1",
            "--eval-frames",
            "4",
            "--max-auc-drop",
            "-100",
        ],
        capsys,
    )
    check_one_line_failure(result, 1, PROG, ["exceeds --max-auc-drop", "int8.gate-failed.onnx"])
    failed, report = tmp_path / "int8.gate-failed.onnx", tmp_path / "int8.gate-failed.report.json"
    assert json.loads(report.read_text())["int8_model"] == str(failed)
    cache = sorted((tmp_path / "calibration-cache").iterdir())
    check_untouched(before, tmp_path, allowed_new=[failed, report, *cache])


@pytest.mark.parametrize("hidden", [["onnx"], ["onnxruntime"]])
@pytest.mark.parametrize("argv", [["--help"], []])
def test_missing_extra_is_one_line_naming_it(
    hidden: list[str], argv: list[str], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = hide_modules_env(tmp_path_factory.mktemp("hide"), hidden)
    result = run_process(PROG, argv, tmp_path, env=env, timeout=120)
    check_one_line_failure(result, 2, PROG, [hidden[0], 'pip install "grm-tracker[calibrate]"'])


@pytest.mark.parametrize(
    "at, kept_crops",
    [("grm.calibration.collect:load_or_collect", False), ("grm.calibration.pipeline:compare_on_sequence", True)],
)
def test_ctrl_c_says_what_was_kept(
    at: str, kept_crops: bool, tiny_onnx: Path, synth_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "int8.onnx"
    out.write_bytes(b"yesterday's INT8 model")
    before = snapshot(tmp_path)
    args = [
        "--model",
        str(tiny_onnx),
        "--data",
        str(synth_root),
        "--output",
        str(out),
        "--samples",
        "4",
        "--threads",
        "1",
        "--eval-frames",
        "4",
    ]
    result = run_interrupted(PROG, args, tmp_path, at, env={"OMP_NUM_THREADS": "1"})
    cache = tmp_path / "calibration-cache"
    if kept_crops:
        line = check_one_line_failure(result, 130, PROG, [f"{out} was not written", f"kept in {cache}"])
        check_untouched(before, tmp_path, allowed_new=sorted(cache.iterdir()))
    else:
        line = check_one_line_failure(result, 130, PROG, [f"nothing was written to {out}"])
        check_untouched(before, tmp_path)
    assert line.startswith("grm-calibrate: interrupted: ")
