"""grm-run on bad input: every case is one line on stderr, the documented exit status, and nothing lost.

Each case asserts the exit status, that stderr holds one ``grm-run: ...`` line without a traceback, that the
files of the work folder (inputs and an earlier result, ``keep.txt``) are byte-identical afterwards, and that
no partial output is left (only the outputs a case allows may appear).

How the file-system failures are produced (these machines run as root, so ``chmod`` stops no write):

- no space: ``/dev/full`` for the boxes and JSON files (a real ENOSPC); video frames go to a temporary file
  beside the target, so ``/dev/full`` cannot reach them: a full disk is injected at the free-space check
  (:func:`grm.runtime.outputs.free_bytes`), and a real one is a 1 MiB tmpfs where mounting is allowed;
- read-only and permission errors: a read-only tmpfs mount where the sandbox allows ``mount``, else skipped;
  an OSError (EROFS, EACCES) injected at the write call (:func:`grm.runtime.atomic.temp_path_for`) always.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import stat
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import onnx
import pytest

from grm.benchmarks.datasets import DATASETS
from grm.runtime import atomic, main, outputs
from grm.runtime.datasets import BENCHMARKS, dataset_threshold, preset_key, resolve_threshold
from grm.runtime.errors import ConfigError, InputError
from grm.runtime.params import METADATA_KEY, ModelMetadata
from tests.badinput import (
    Hint,
    Outcome,
    check_hint,
    check_one_line_failure,
    check_untouched,
    find_hints,
    run_interrupted,
    run_main,
    run_process,
    snapshot,
    tmpfs,
)

from .runtime_fakes import TINY, build_model, square_frames, write_folder

PROG = "grm-run"
INIT = "30,50,20,20"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def work(tmp_path: Path, clip_video: Path, fake_onnx: Path) -> SimpleNamespace:
    """Inputs and an earlier result in one folder: the 12-frame clip, the fake model, keep.txt, a folder, a file."""
    shutil.copy(clip_video, tmp_path / "clip.avi")
    shutil.copy(fake_onnx, tmp_path / "tiny.onnx")
    (tmp_path / "keep.txt").write_text("1.0000,2.0000,3.0000,4.0000\n")
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("not a folder\n")
    (tmp_path / "junk.avi").write_bytes(b"junk" * 100)
    (tmp_path / "model.bin").write_bytes(b"\0" * 64)
    (tmp_path / "junk.onnx").write_bytes(b"this is not a protobuf" * 10)
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "no_frames").mkdir()
    folder = write_folder(tmp_path / "bad_first", square_frames(3)[0])
    (folder / "1.png").write_bytes(b"not a png")
    return SimpleNamespace(
        root=tmp_path, video=tmp_path / "clip.avi", model=tmp_path / "tiny.onnx", keep=tmp_path / "keep.txt"
    )


def expand(args: list[str], work: SimpleNamespace) -> list[str]:
    return [a.format(root=work.root, video=work.video, model=work.model, keep=work.keep) for a in args]


def run(work: SimpleNamespace, capsys: pytest.CaptureFixture[str], *args: str | Path) -> Outcome:
    return run_main(main, expand([str(a) for a in args], work), capsys)


V, M, K = "{video}", "{model}", "{keep}"
BASE = [V, "--box", INIT, "--model", M, "--boxes-out", K]

# (case id, arguments, text the one line must hold); every case exits with status 2
CASES = [
    ("max-frames-0", [*BASE, "--max-frames", "0"], "--max-frames"),
    ("max-frames-text", [*BASE, "--max-frames", "ten"], "--max-frames"),
    ("threads-0", [*BASE, "--threads", "0"], "--threads"),
    ("threads-negative", [*BASE, "--threads", "-2"], "--threads"),
    ("threshold-1.5", [*BASE, "--threshold", "1.5"], "must lie in [0, 1)"),
    ("threshold-negative", [*BASE, "--threshold", "-0.1"], "must lie in [0, 1)"),
    ("threshold-nan", [*BASE, "--threshold", "nan"], "must lie in [0, 1)"),
    ("threshold-text", [*BASE, "--threshold", "high"], "--threshold"),
    ("lost-threshold-2", [*BASE, "--lost-threshold", "2"], "--lost-threshold"),
    ("dataset-unknown", [*BASE, "--dataset", "kitti"], "unknown dataset 'kitti'"),
    ("dataset-typo", [*BASE, "--dataset", "lasott"], "did you mean 'lasot'?"),
    ("dataset-and-threshold", [*BASE, "--dataset", "uav", "--threshold", "0.3"], "either --threshold or --dataset"),
    ("backend-unknown", [*BASE, "--backend", "cuda"], "unknown backend 'cuda'"),
    ("backend-for-plans", [*BASE, "--backend", "tensorrt"], "--backend tensorrt cannot run"),
    ("box-3-values", [V, "--box", "30,50,20", "--model", M, "--boxes-out", K], "has 3 values"),
    ("box-text", [V, "--box", "a,b,c,d", "--model", M, "--boxes-out", K], "is not four numbers"),
    ("box-nan", [V, "--box", "nan,50,20,20", "--model", M, "--boxes-out", K], "NaN or infinity"),
    ("box-zero-size", [V, "--box", "30,50,0,20", "--model", M, "--boxes-out", K], "zero or negative size"),
    ("unknown-option", [*BASE, "--frobnicate"], "No such option"),
    ("source-missing", ["{root}/missing.mp4", "--box", INIT, "--model", M, "--boxes-out", K], "source not found"),
    ("source-junk", ["{root}/junk.avi", "--box", INIT, "--model", M, "--boxes-out", K], "cannot open video"),
    ("source-no-frames", ["{root}/no_frames", "--box", INIT, "--model", M, "--boxes-out", K], "no image files"),
    ("source-first-frame", ["{root}/bad_first", "--box", INIT, "--model", M, "--boxes-out", K], "frame 0"),
    ("model-missing", [V, "--box", INIT, "--model", "{root}/none.onnx", "--boxes-out", K], "model file not found"),
    ("model-folder", [V, "--box", INIT, "--model", "{root}/a_folder", "--boxes-out", K], "is a folder"),
    ("model-suffix", [V, "--box", INIT, "--model", "{root}/model.bin", "--boxes-out", K], "cannot tell the model"),
    ("model-junk-onnx", [V, "--box", INIT, "--model", "{root}/junk.onnx", "--boxes-out", K], "junk.onnx"),
    ("model-empty-onnx", [V, "--box", INIT, "--model", "{root}/empty.onnx", "--boxes-out", K], "empty.onnx"),
    ("config-other", [*BASE, "--config", "vitb_999"], "exported for config 'tiny' but --config is 'vitb_999'"),
    ("boxes-out-folder", [V, "--box", INIT, "--model", M, "--boxes-out", "{root}/a_folder"], "is a folder"),
    ("boxes-out-under-file", [V, "--box", INIT, "--model", M, "--boxes-out", "{root}/a_file/b.txt"], "not a folder"),
    ("json-out-folder", [*BASE, "--json-out", "{root}/a_folder"], "is a folder"),
    ("video-out-suffix", [*BASE, "--video-out", "{root}/v.xyz"], "give a file name ending in"),
    ("video-out-stdout", [*BASE, "--video-out", "/dev/stdout"], "give a file name ending in"),
    ("video-out-under-file", [*BASE, "--video-out", "{root}/a_file/v.avi"], "not a folder"),
    ("two-outputs-on-stdout", [V, "--box", INIT, "--model", M, "--boxes-out", "-", "--json-out", "-"], "only one"),
    ("output-is-the-source", [V, "--box", INIT, "--model", M, "--boxes-out", V], "is an input of this run"),
    ("output-is-the-model", [*BASE, "--json-out", M], "is an input of this run"),
    ("outputs-collide", [*BASE, "--json-out", K], "name the same file"),
    ("boxes-on-full-disk", [V, "--box", INIT, "--model", M, "--boxes-out", "/dev/full"], "no space left"),
    ("json-on-full-disk", [V, "--box", INIT, "--model", M, "--json-out", "/dev/full"], "no space left"),
]


@pytest.mark.parametrize("args, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(work: SimpleNamespace, capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    before = snapshot(work.root)
    outcome = run(work, capsys, *args)
    check_one_line_failure(outcome, 2, PROG, [needle])
    check_untouched(before, work.root)
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode), "the device node was replaced"


def test_config_hint_names_no_unknown_config(work: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    line = check_one_line_failure(run(work, capsys, *BASE, "--config", "vitb_999"), 2, PROG)
    assert "grm-export --config vitb_999" not in line and "drop --config" in line


# --- checkpoints: a checkpoint needs torch; corrupt ones are one line whatever torch raises ----------------------

CHECKPOINTS = {
    "truncated": b"\x80\x04junk",  # an interrupted download of a pickle
    "empty": b"",
    "pickle-of-garbage": pickle.dumps({"net": "not weights", "epoch": [1, 2]}),
}


def _checkpoint(root: Path, kind: str) -> Path:
    path = root / f"{kind}.pth.tar"
    if kind == "folder":
        path.mkdir()
    elif kind == "zip-of-garbage":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", b"garbage")
    else:
        path.write_bytes(CHECKPOINTS[kind])
    return path


@pytest.mark.parametrize("kind", [*CHECKPOINTS, "zip-of-garbage", "folder"])
def test_bad_checkpoint(work: SimpleNamespace, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    pytest.importorskip("torch")
    path = _checkpoint(work.root, kind)
    before = snapshot(work.root)
    outcome = run(work, capsys, V, "--box", INIT, "--model", path, "--config", "tiny", "--boxes-out", K)
    check_one_line_failure(outcome, 2, PROG, [path.name])
    check_untouched(before, work.root)


def test_checkpoint_without_torch_names_the_extra(
    work: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's [cpu] environment has no torch (simulated: an entry None in sys.modules blocks the import)."""
    path = _checkpoint(work.root, "pickle-of-garbage")
    monkeypatch.setitem(sys.modules, "torch", None)
    before = snapshot(work.root)
    outcome = run(work, capsys, V, "--box", INIT, "--model", path, "--config", "tiny", "--boxes-out", K)
    check_one_line_failure(outcome, 2, PROG, ['pip install "grm-tracker[train]"', path.name])
    check_untouched(before, work.root)


def test_plan_without_tensorrt(
    work: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from grm.runtime.backends.manifest import write_manifest

    from .test_tensorrt_backend import _manifest
    from .trt_fakes import PLAN_BYTES

    plan = work.root / "tiny.plan"
    plan.write_bytes(PLAN_BYTES)
    write_manifest(plan, _manifest())
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    before = snapshot(work.root)
    outcome = run(work, capsys, V, "--box", INIT, "--model", plan, "--boxes-out", K)
    check_one_line_failure(outcome, 2, PROG, ["tensorrt"])
    check_untouched(before, work.root)


@pytest.mark.parametrize("metadata", ["[1, 2]", '"tiny"', "{}", '{"config": "tiny", "tracker": 3}', "{nope"])
def test_model_with_unreadable_metadata(
    work: SimpleNamespace, capsys: pytest.CaptureFixture[str], metadata: str
) -> None:
    model = onnx.load(str(build_model(work.root / "odd.onnx", with_metadata=False)))
    onnx.helper.set_model_props(model, {METADATA_KEY: metadata})
    onnx.save(model, str(work.root / "odd.onnx"))
    before = snapshot(work.root)
    outcome = run(work, capsys, V, "--box", INIT, "--model", work.root / "odd.onnx", "--boxes-out", K)
    check_one_line_failure(outcome, 2, PROG, ["odd.onnx", "metadata"])
    check_untouched(before, work.root)


@pytest.mark.parametrize("text", ["[1, 2]", "3", '"x"', "null", '{"config": "tiny"}', '{"tracker": []}'])
def test_metadata_that_is_not_an_object_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="model metadata"):
        ModelMetadata.from_json(text)


# --- outputs that fail while writing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, option", [(errno.EROFS, "--boxes-out"), (errno.EACCES, "--json-out"), (errno.ENOSPC, "--boxes-out")]
)
def test_write_error_injected_at_the_write_call(
    work: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, code: int, option: str
) -> None:
    """Injected: creating the temporary file beside the target raises (root ignores permissions and this
    sandbox may refuse mounts), so the earlier result at the final path must stay as it was."""

    def refuse(target: Path) -> Path:
        raise OSError(code, os.strerror(code), str(target))

    monkeypatch.setattr(atomic, "temp_path_for", refuse)
    before = snapshot(work.root)
    outcome = run(work, capsys, V, "--box", INIT, "--model", M, option, K)
    cause = "no space left on the device" if code == errno.ENOSPC else os.strerror(code)
    check_one_line_failure(
        outcome, 2, PROG, [f"cannot write the {'boxes file' if 'boxes' in option else 'JSON'}", str(work.keep), cause]
    )
    check_untouched(before, work.root)


def test_read_only_mount(work: SimpleNamespace, capsys: pytest.CaptureFixture[str], tmp_path_factory) -> None:
    """A real read-only file system (tmpfs mounted ro): the earlier result in it stays, the run fails first."""
    with tmpfs(tmp_path_factory.mktemp("ro") / "mnt", files={"old.txt": "1,2,3,4\n"}, read_only=True) as folder:
        before, before_ro = snapshot(work.root), snapshot(folder)
        outcome = run(work, capsys, V, "--box", INIT, "--model", M, "--boxes-out", folder / "old.txt")
        check_one_line_failure(outcome, 2, PROG, ["--boxes-out", "read-only file system"])
        check_untouched(before, work.root)
        assert snapshot(folder) == before_ro


# --- the video writer ---------------------------------------------------------------------------------------------


def _boxes_rows(path: Path) -> int:
    return len(np.loadtxt(path, delimiter=",", ndmin=2))


def test_video_on_a_full_disk_keeps_the_boxes(
    work: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Injected: the file system fills up after 4 frames (free_bytes, the writer's check, drops to 0)."""
    calls = iter(range(10_000))
    monkeypatch.setattr(outputs, "free_bytes", lambda folder: 0 if next(calls) >= 4 else 1 << 40)
    boxes, video = work.root / "b.txt", work.root / "v.mp4"
    before = snapshot(work.root)
    outcome = run(work, capsys, V, "--box", INIT, "--model", M, "--boxes-out", boxes, "--video-out", video)
    check_one_line_failure(outcome, 2, PROG, ["cannot write the video", "no space left", "kept boxes of 5 frames"])
    check_untouched(before, work.root, allowed_new=[boxes])
    assert _boxes_rows(boxes) == 5 and not video.exists()


def test_video_writer_that_writes_nothing(
    work: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Injected: an encoder that opens and then drops every frame (OpenCV only logs write failures)."""
    real = cv2.VideoWriter

    class Dropping:
        def __init__(self, path: str, *args) -> None:
            self._writer = real(path, *args)

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return self._writer.isOpened()

        def write(self, frame) -> None:
            pass

        def release(self) -> None:
            self._writer.release()

    monkeypatch.setattr(cv2, "VideoWriter", Dropping)
    boxes, summary, video = work.root / "b.txt", work.root / "s.json", work.root / "v.avi"
    before = snapshot(work.root)
    outcome = run(
        work, capsys, V, "--box", INIT, "--model", M, "--boxes-out", boxes, "--json-out", summary, "--video-out", video
    )
    check_one_line_failure(outcome, 2, PROG, ["cannot write the video", "0 of 12 frames", "kept boxes of 12"])
    check_untouched(before, work.root, allowed_new=[boxes, summary])
    assert _boxes_rows(boxes) == 12 and not video.exists()
    assert "cannot write the video" in json.loads(summary.read_text())["error"]


def test_video_writer_that_cannot_open(
    work: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Injected: OpenCV finds no encoder (isOpened() is False), as on builds without FFmpeg."""

    class Closed:
        def __init__(self, *args) -> None:
            pass

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return False

        def release(self) -> None:
            pass

    monkeypatch.setattr(cv2, "VideoWriter", Closed)
    boxes, video = work.root / "b.txt", work.root / "v.mp4"
    before = snapshot(work.root)
    outcome = run(work, capsys, V, "--box", INIT, "--model", M, "--boxes-out", boxes, "--video-out", video)
    check_one_line_failure(outcome, 2, PROG, ["could not open an encoder", "kept boxes of 1 frame "])
    check_untouched(before, work.root, allowed_new=[boxes])
    assert _boxes_rows(boxes) == 1 and not video.exists()


def test_video_on_a_real_full_file_system(
    work: SimpleNamespace, capsys: pytest.CaptureFixture[str], tmp_path_factory
) -> None:
    """A real 1 MiB tmpfs: too small for even one raw frame plus the writer's margin."""
    with tmpfs(tmp_path_factory.mktemp("full") / "mnt", size="1m") as folder:
        boxes, video = work.root / "b.txt", folder / "v.avi"
        before = snapshot(work.root)
        outcome = run(work, capsys, V, "--box", INIT, "--model", M, "--boxes-out", boxes, "--video-out", video)
        check_one_line_failure(outcome, 2, PROG, ["cannot write the video", "no space left", "kept boxes"])
        check_untouched(before, work.root, allowed_new=[boxes])
        assert list(folder.iterdir()) == []


# --- special output targets -------------------------------------------------------------------------------------


def test_boxes_to_standard_output(work: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    """'-' is standard output: it carries the boxes alone (the summary goes to stderr); no file named '-'."""
    outcome = run(work, capsys, V, "--box", INIT, "--model", M, "--boxes-out", "-", "--max-frames", "4")
    assert outcome.code == 0, outcome.stderr
    rows = [line.split(",") for line in outcome.stdout.splitlines()]
    assert len(rows) == 4 and all(len(r) == 4 for r in rows) and rows[0] == ["30.0000", "50.0000", "20.0000", "20.0000"]
    assert "frames: 4" in outcome.stderr and not (work.root / "-").exists()


def test_dev_stdout_in_a_real_process(work: SimpleNamespace) -> None:
    """/dev/stdout (a link to /proc/self/fd/1) is written in place, never replaced."""
    if not Path("/dev/stdout").is_symlink():
        pytest.skip("/dev/stdout is not a symbolic link here")
    target = os.readlink("/dev/stdout")
    outcome = run_process(
        PROG,
        expand([V, "--box", INIT, "--model", M, "--boxes-out", "/dev/stdout", "--max-frames", "3"], work),
        cwd=work.root,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert outcome.code == 0, outcome.stderr
    assert len(outcome.stdout.splitlines()) == 3 and outcome.stdout.startswith("30.0000,50.0000")
    assert Path("/dev/stdout").is_symlink() and os.readlink("/dev/stdout") == target


def test_opencv_and_ffmpeg_print_nothing_before_the_error(work: SimpleNamespace) -> None:
    """A cut MP4 (no 'moov' atom) makes FFmpeg log on the C level: a real process shows what a user sees.

    The same run with FFmpeg's log level set by the user (a debugging aid that grm-run leaves alone) shows the
    FFmpeg line, so this clip does trigger the logging that grm-run silences."""
    noise = np.random.default_rng(0).integers(0, 255, (30, 120, 160, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(work.root / "whole.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for frame in noise:
        writer.write(frame)
    writer.release()
    whole = (work.root / "whole.mp4").read_bytes()
    video = work.root / "cut.mp4"
    video.write_bytes(whole[: len(whole) // 2])
    args = expand([str(video), "--box", INIT, "--model", M, "--boxes-out", K], work)
    before = snapshot(work.root)
    outcome = run_process(PROG, args, cwd=work.root, env={"OMP_NUM_THREADS": "1"})
    check_one_line_failure(outcome, 2, PROG, ["cannot open video"])
    check_untouched(before, work.root)
    loud = run_process(PROG, args, cwd=work.root, env={"OMP_NUM_THREADS": "1", "OPENCV_FFMPEG_LOGLEVEL": "16"})
    assert loud.code == 2 and "moov atom not found" in loud.stderr + loud.stdout


# --- Ctrl-C -------------------------------------------------------------------------------------------------------


def test_ctrl_c_keeps_what_was_tracked(work: SimpleNamespace) -> None:
    """SIGINT to a real process mid-run: one line says what was kept, the boxes file holds every frame so far.

    Frame 10 of the source is corrupt, so the session warns there: the interrupt lands in that call (run_interrupted
    pauses it), after frames 0..9 were tracked, at a known step rather than a guessed time."""
    frames = square_frames(20)[0]
    source = write_folder(work.root / "seq", frames)
    (source / "11.png").write_bytes(b"corrupt")  # index 10
    boxes, summary = work.root / "b.txt", work.root / "s.json"
    before = snapshot(work.root)
    outcome = run_interrupted(
        PROG,
        [str(source), "--box", INIT, "--model", str(work.model), "--boxes-out", str(boxes), "--json-out", str(summary)],
        cwd=work.root,
        at="grm.runtime.session:log.warning",
        env={"OMP_NUM_THREADS": "1"},
    )
    check_one_line_failure(
        outcome,
        130,
        PROG,
        ["interrupted: stopped after 10 frames", "kept boxes of 10 frames", "run the same command again"],
    )
    check_untouched(before, work.root, allowed_new=[boxes, summary])
    assert _boxes_rows(boxes) == 10 and json.loads(summary.read_text())["interrupted"] is True


def test_ctrl_c_without_outputs_says_how_to_keep_them(work: SimpleNamespace) -> None:
    before = snapshot(work.root)
    outcome = run_interrupted(
        PROG,
        [str(work.video), "--box", INIT, "--model", str(work.model)],
        cwd=work.root,
        at="grm.runtime.tracker:Tracker.track",
        env={"OMP_NUM_THREADS": "1"},
    )
    check_one_line_failure(outcome, 130, PROG, ["stopped after 1 frame;", "--boxes-out FILE"])
    check_untouched(before, work.root)


# --- datasets and thresholds: one table for every command ---------------------------------------------------------


def test_every_benchmark_grm_bench_loads_is_accepted() -> None:
    assert tuple(DATASETS) == BENCHMARKS
    for name in BENCHMARKS:
        assert preset_key(name) == name.upper()
        assert resolve_threshold(TINY, None, name) == TINY.thresholds.get(name.upper(), TINY.thresholds["DEFAULT"])
    assert dataset_threshold(TINY, "otb") == 0.0 and dataset_threshold(TINY, "LaSOT") == 0.4
    with pytest.raises(ConfigError, match="did you mean 'uav20l'"):
        resolve_threshold(TINY, None, "uav20")
    with pytest.raises(InputError, match="must lie in"):
        resolve_threshold(TINY, 1.0, None)


@pytest.mark.parametrize("dataset, threshold", [("otb", 0.0), ("OTB", 0.0), ("lasot", 0.4), ("uav", 0.55)])
def test_dataset_selects_the_threshold(
    work: SimpleNamespace, capsys: pytest.CaptureFixture[str], dataset: str, threshold: float
) -> None:
    summary = work.root / "s.json"
    outcome = run(
        work, capsys, V, "--box", INIT, "--model", M, "--dataset", dataset, "--json-out", summary, "--max-frames", "3"
    )
    assert outcome.code == 0, outcome.stderr
    assert json.loads(summary.read_text())["threshold"] == threshold


# --- hints: every suggested command line names real options -------------------------------------------------------


HINTS = find_hints(REPO, ["runtime", "benchmarks"])


@pytest.mark.parametrize("hint", HINTS, ids=[f"{h.where}:{h.line}" for h in HINTS])
def test_hint_names_real_options(hint: Hint) -> None:
    check_hint(hint)


@pytest.mark.parametrize(
    "line",
    [
        "grm-export --precision fp32",
        "grm-calibrate --config X --engine --output P",
        "grm-run demo --model --box 1,2,3,4",
        "grm-bench pack --results X --engine E",
    ],
)
def test_hint_check_catches_wrong_hints(line: str) -> None:
    with pytest.raises(AssertionError):
        check_hint(Hint("here", line))


def test_hints_are_found() -> None:
    lines = {h.line for h in HINTS}
    assert "grm-run demo --model MODEL.onnx" in lines and any(
        line.startswith("grm-calibrate --model") for line in lines
    )
