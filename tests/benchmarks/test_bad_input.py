"""grm-bench on bad input: one line on stderr, the documented exit status, earlier results untouched.

Each case asserts the exit status, that stderr holds one ``grm-bench: ...`` line without a traceback, that the
files of the work folder (the dataset and an earlier run's results) are byte-identical afterwards, and that no
partial file is left.

File-system failures (these machines run as root, so ``chmod`` stops no write): a read-only or a full tmpfs
mount where the sandbox allows ``mount`` (else skipped), and always an OSError (EROFS, ENOSPC) injected where
the results are written (:func:`grm.runtime.atomic.temp_path_for`); ``/dev/full`` as the results folder.
Ctrl-C is a real SIGINT to a real process, with progress bars off (``TQDM_DISABLE``) so that stderr holds only
the messages.
"""

from __future__ import annotations

import errno
import functools
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from tqdm import tqdm

import grm.benchmarks
from grm.benchmarks import cli as bench_cli
from grm.benchmarks import engine
from grm.benchmarks.datasets import DATASETS
from grm.benchmarks.textio import read_boxes
from grm.runtime import atomic
from grm.runtime.datasets import BENCHMARKS
from tests.badinput import (
    Outcome,
    check_one_line_failure,
    check_untouched,
    run_interrupted,
    run_main,
    snapshot,
    tmpfs,
)

from .bench_fakes import FakeBackend, still_boxes, write_boxes
from .test_run import otb_tree

PROG = "grm-bench"
REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "runtime" / "assets" / "demo.onnx"


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """An OTB tree (Deer), a model file that opens as the fake backend, and an earlier run's results.

    Progress bars are off: grm-bench draws them on any stderr, and these cases count its lines."""
    model, real = tmp_path / "a.onnx", engine.open_model
    model.write_bytes(b"")
    monkeypatch.setattr(
        engine, "open_model", lambda path, **kw: FakeBackend() if path == str(model) else real(path, **kw)
    )
    monkeypatch.setattr(bench_cli, "tqdm", functools.partial(tqdm, disable=True))
    old = write_boxes(tmp_path / "results" / "old" / "otb" / "Deer.txt", still_boxes(71))
    (tmp_path / "a_file").write_text("not a folder\n")
    (tmp_path / "a_folder").mkdir()
    return SimpleNamespace(
        root=tmp_path, data=otb_tree(tmp_path / "otb", ("Deer",)), model=model, old=old, results=tmp_path / "results"
    )


def expand(args: list[str], work: SimpleNamespace) -> list[str]:
    return [a.format(root=work.root, data=work.data, model=work.model, results=work.results) for a in args]


def run(work: SimpleNamespace, capsys: pytest.CaptureFixture[str], *args: str) -> Outcome:
    return run_main(grm.benchmarks.main, expand(list(args), work), capsys)


RUN = ["--dataset", "otb", "--engine", "{model}", "--data-root", "{data}", "--partial", "--results-dir", "{results}"]
SPEED = ["speed", "--engine", "{model}", "--source", "{data}/Deer"]

# (case id, arguments, text the one line must hold); every case exits with status 2
CASES = [
    ("threshold-3", [*RUN, "--threshold", "3"], "--threshold 3 must lie in [0, 1)"),
    ("threshold-negative", [*RUN, "--threshold", "-5"], "must lie in [0, 1)"),
    ("threshold-1", [*RUN, "--threshold", "1"], "must lie in [0, 1)"),
    ("threshold-nan", [*RUN, "--threshold", "nan"], "must lie in [0, 1)"),
    ("threshold-text", [*RUN, "--threshold", "low"], "--threshold"),
    ("workers-0", [*RUN, "--workers", "0"], "--workers"),
    ("threads-0", [*RUN, "--threads", "0"], "--threads"),
    ("shard-0", [*RUN, "--shard", "0/2"], "--shard"),
    ("shard-3-of-2", [*RUN, "--shard", "3/2"], "--shard"),
    ("shard-text", [*RUN, "--shard", "half"], "--shard"),
    ("protocol", [*RUN, "--protocol", "vot"], "--protocol"),
    ("dataset-unknown", [*RUN[:1], "kitti", *RUN[2:]], "unknown dataset 'kitti'"),
    ("dataset-typo", [*RUN[:1], "lasot-ext", *RUN[2:]], "did you mean 'lasot_ext'?"),
    ("label-path", [*RUN, "--label", "../elsewhere"], "--label"),
    ("label-dotdot", [*RUN, "--label", ".."], "--label"),
    ("label-empty", [*RUN, "--label", " "], "--label"),
    ("engine-missing", [*RUN[:3], "{root}/none.onnx", *RUN[4:]], "model file not found"),
    ("engine-folder", [*RUN[:3], "{root}/a_folder", *RUN[4:]], "is a folder"),
    ("sequence-unknown", [*RUN, "--sequence", "Nope"], "unknown sequence"),
    ("data-root-missing", [*RUN[:5], "{root}/nowhere", *RUN[6:]], "nowhere"),
    ("results-under-file", [*RUN[:-1], "{root}/a_file"], "not a folder"),
    ("results-dev-full", [*RUN[:-1], "/dev/full"], "not a folder"),
    ("engine-option-missing", ["--dataset", "otb"], "--engine"),
    ("unknown-option", [*RUN, "--fast"], "No such option"),
    ("speed-threshold-2", [*SPEED, "--threshold", "2"], "must lie in [0, 1)"),
    ("speed-frames-1", [*SPEED, "--frames", "1"], "--frames"),
    ("speed-warmup-negative", [*SPEED, "--warmup", "-1"], "--warmup"),
    (
        "analyze-protocol",
        [
            "analyze",
            "--dataset",
            "otb",
            "--data-root",
            "{data}",
            "--partial",
            "--results",
            "{results}/old/otb",
            "--protocol",
            "vot",
        ],
        "--protocol",
    ),
]


@pytest.mark.parametrize("args, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(work: SimpleNamespace, capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    before = snapshot(work.root)
    outcome = run(work, capsys, *args)
    check_one_line_failure(outcome, 2, PROG, [needle])
    check_untouched(before, work.root)


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EACCES])
def test_results_write_error_injected(
    work: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Injected at the write call: creating a result file's temporary twin raises (no chained tracebacks)."""

    def refuse(target: Path) -> Path:
        raise OSError(code, os.strerror(code), str(target))

    monkeypatch.setattr(atomic, "temp_path_for", refuse)
    before = snapshot(work.root)
    outcome = run(work, capsys, *RUN, "--label", "new")
    cause = "no space left on the device" if code == errno.ENOSPC else os.strerror(code)
    check_one_line_failure(outcome, 2, PROG, ["cannot write", str(work.results / "new" / "otb"), cause])
    check_untouched(before, work.root)


def test_results_on_a_read_only_mount(
    work: SimpleNamespace, capsys: pytest.CaptureFixture[str], tmp_path_factory
) -> None:
    with tmpfs(tmp_path_factory.mktemp("ro") / "mnt", read_only=True) as folder:
        before = snapshot(work.root)
        outcome = run(work, capsys, *RUN[:-1], str(folder / "results"))
        check_one_line_failure(outcome, 2, PROG, ["--results-dir", "read-only file system"])
        check_untouched(before, work.root)


def test_results_on_a_full_mount(work: SimpleNamespace, capsys: pytest.CaptureFixture[str], tmp_path_factory) -> None:
    """A real 4 KiB tmpfs: the run manifest fits (a rerun resumes with it), the first result file does not."""
    with tmpfs(tmp_path_factory.mktemp("full") / "mnt", size="4k") as folder:
        before = snapshot(work.root)
        outcome = run(work, capsys, *RUN[:-1], str(folder / "results"))
        check_one_line_failure(outcome, 2, PROG, ["cannot write", "no space left on the device"])
        check_untouched(before, work.root)
        assert [p.name for p in folder.rglob("*") if p.is_file()] == ["run_manifest.json"]


def test_dataset_names_are_the_runtime_table() -> None:
    """grm-bench's loaders and grm-run's/grm-calibrate's --dataset read one table."""
    assert tuple(DATASETS) == BENCHMARKS


# --- Ctrl-C on a real process -------------------------------------------------------------------------------------


def _interrupted_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: int, at: str) -> None:
    """Deer is finished by an earlier run; the interrupt lands at ``at`` (run_interrupted pauses it) while
    KiteSurf is being tracked: Deer's files stay as they were and the line says how to resume."""
    data = otb_tree(tmp_path / "otb", ("Deer", "KiteSurf"))
    results = tmp_path / "results"
    argv = [
        "--dataset",
        "otb",
        "--engine",
        str(DEMO_MODEL),
        "--data-root",
        str(data),
        "--results-dir",
        str(results),
        "--label",
        "demo",
        "--threads",
        "1",
        "--no-plots",
        "--sequence",
        "Deer",
        "--sequence",
        "KiteSurf",
    ]
    earlier = run_main(grm.benchmarks.main, [*argv[:-2], "--no-analyze"], capsys)  # Deer only
    assert earlier.code == 0, earlier.stderr
    folder = results / "demo" / "otb"
    before = snapshot(tmp_path)
    before.pop(folder / "run_manifest.json")  # its 'updated' time changes with every run
    outcome = run_interrupted(
        PROG, [*argv, "--workers", str(workers)], cwd=tmp_path, at=at, env={"OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    )
    check_one_line_failure(
        outcome,
        130,
        PROG,
        [f"interrupted: 1 of 2 sequences are finished in {folder}", "run the same command again to resume"],
    )
    check_untouched(before, tmp_path, allowed_new=[folder / "run_manifest.json"])
    assert not (folder / "KiteSurf.txt").exists() and len(read_boxes(folder / "Deer.txt")) == 71


def test_ctrl_c_keeps_finished_sequences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _interrupted_resume(tmp_path, capsys, workers=1, at="grm.benchmarks.run:run_one")


def test_ctrl_c_with_worker_processes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Interrupted while waiting for the workers: the parent stops them, none prints a traceback."""
    _interrupted_resume(tmp_path, capsys, workers=2, at="grm.benchmarks.run:as_completed")
