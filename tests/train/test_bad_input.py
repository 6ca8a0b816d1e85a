"""grm-train on bad input, damaged checkpoints, full or read-only outputs, missing torch and Ctrl-C: one line, the
documented exit status, and files that existed before left byte-identical.

Read-only outputs use :func:`tests.badinput.read_only_folder` (a read-only tmpfs mount where this machine allows
mounting, else an EROFS injected at Python's open/mkdir/rename: these machines run as root, which chmod does not
stop). "No space left" comes from a real ``/dev/full`` where a path can point there (``grm-train export``); for a
checkpoint inside the run folder it is injected at ``torch.save``.
"""

from __future__ import annotations

import errno
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from grm.train import checkpointing as ckpt
from grm.train import main
from grm.train.model import build_model
from grm.train.monitor import read_metrics
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

PROG = "grm-train"
TINY_RUN = [
    "--config",
    "tiny",
    "--epochs",
    "1",
    "--batch-size",
    "2",
    "--samples-per-epoch",
    "2",
    "--workers",
    "0",
    "--threads",
    "1",
    "--no-progress",
]


def _run(tmp_path: Path, synth_root: Path, *extra: str) -> list[str]:
    return [*TINY_RUN, "--got10k-dir", str(synth_root), "--output", str(tmp_path / "run"), *extra]


OPTION_CASES: dict[str, tuple[list[str], str]] = {
    "epochs-0": (["--epochs", "0"], "--epochs"),
    "batch-size-0": (["--batch-size", "0"], "--batch-size"),
    "samples-per-epoch-0": (["--samples-per-epoch", "0"], "--samples-per-epoch"),
    "workers-negative": (["--workers", "-1"], "--workers"),
    "nproc-0": (["--nproc", "0"], "--nproc"),
    "keep-0": (["--keep", "0"], "--keep"),
    "threads-0": (["--threads", "0"], "--threads"),
    "val-interval-0": (["--val-interval", "0"], "--val-interval"),
    "val-sequences-0": (["--val-sequences", "0"], "--val-sequences"),
    "backbone-multiplier-negative": (["--backbone-multiplier", "-1"], "--backbone-multiplier"),
    "seed-negative": (["--seed", "-1"], "--seed"),
    "amp": (["--amp", "fp8"], "--amp must be one of bf16, fp16"),
    "device": (["--device", "gpu0"], "--device 'gpu0' is not a torch device"),
    "config": (["--config", "tinny"], "did you mean 'tiny'"),
    "unknown-option": (["--learning-rate", "0.1"], "--learning-rate"),
    "lr": (["--lr", "0"], "--lr must be positive"),
    "no-full-batch": (["--samples-per-epoch", "1"], "give no full batch of 2"),
    "val-root-missing": (["--val-root", "nowhere"], "nowhere"),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_bad_training_option_is_one_line(
    case: str,
    synth_root: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
    monkeypatch,
) -> None:  # noqa: ANN001
    extra, fragment = OPTION_CASES[case]
    monkeypatch.chdir(tmp_path)
    args = _run(tmp_path, synth_root, *extra)
    result = run_main(main, args, capsys)
    check_one_line_failure(result, 2, PROG, [fragment])
    assert not list((tmp_path / "run").glob("checkpoints/*.pt"))


def test_cuda_device_without_a_gpu(synth_root: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = run_main(main, _run(tmp_path, synth_root, "--device", "cuda:0"), capsys)
    check_one_line_failure(result, 2, PROG, ["no CUDA GPU is available", "--device cpu"])


def test_missing_output_and_missing_data(tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    check_one_line_failure(run_main(main, ["--config", "tiny"], capsys), 2, PROG, ["--output is required"])
    monkeypatch.setenv("GRM_GOT10K_DIR", "")
    result = run_main(
        main, ["--config", "tiny", "--output", str(tmp_path / "run"), "--data-root", str(tmp_path / "missing")], capsys
    )
    check_one_line_failure(result, 2, PROG, ["GOT-10k root"])


def test_output_that_is_a_file(synth_root: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    (tmp_path / "run").write_text("notes")
    before = snapshot(tmp_path)
    check_one_line_failure(run_main(main, _run(tmp_path, synth_root), capsys), 2, PROG, ["is a file"])
    check_untouched(before, tmp_path)


def test_read_only_run_folder(synth_root: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    """Mount or injected EROFS (see the module docstring)."""
    with read_only_folder(tmp_path / "ro", monkeypatch) as how:
        result = run_main(
            main, [*TINY_RUN, "--got10k-dir", str(synth_root), "--output", str(tmp_path / "ro" / "r")], capsys
        )
        check_one_line_failure(result, 2, PROG, [str(tmp_path / "ro"), "Read-only file system"])
        assert not any((tmp_path / "ro").iterdir()), how


def test_full_disk_when_saving_a_checkpoint(synth_root: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    """ENOSPC injected at torch.save (the run folder cannot point at /dev/full): one line, no partial file."""

    def full(obj, f, *args, **kwargs):  # noqa: ANN001, ANN202
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full)
    result = run_main(main, _run(tmp_path, synth_root), capsys)
    line = check_one_line_failure(result, 2, PROG, ["no space left on the device"])
    assert str(tmp_path / "run" / "checkpoints" / "checkpoint_0001.pt") in line
    assert not [p for p in (tmp_path / "run").rglob("*") if ".partial" in p.name or p.suffix == ".pt"]


SYNTH_CASES: dict[str, tuple[list[str], str]] = {
    "subset": (["--subset", "bogus"], "--subset must be one of train, val, test; got 'bogus'"),
    "subset-typo": (["--subset", "tran"], "did you mean 'train'"),
    "sequences-0": (["--sequences", "0"], "--sequences"),
    "min-frames": (["--min-frames", "5"], "need 20 <= --min-frames <= --max-frames"),
    "max-below-min": (["--min-frames", "40", "--max-frames", "30"], "need 20 <= --min-frames"),
    "sequences-missing": (["--sequences"], "--sequences"),
}


@pytest.mark.parametrize("case", sorted(SYNTH_CASES))
def test_bad_synth_option_creates_nothing(case: str, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    extra, fragment = SYNTH_CASES[case]
    args = [
        "synth",
        "--output",
        str(tmp_path / "data"),
        *(["--sequences", "1"] if "sequences" not in case else []),
        *extra,
    ]
    check_one_line_failure(run_main(main, args, capsys), 2, PROG, [fragment])
    assert list(tmp_path.iterdir()) == []


def test_synth_into_a_read_only_folder(tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    with read_only_folder(tmp_path / "ro", monkeypatch):
        result = run_main(main, ["synth", "--output", str(tmp_path / "ro" / "data"), "--sequences", "1"], capsys)
        check_one_line_failure(result, 2, PROG, ["Read-only file system"])
        assert not any((tmp_path / "ro").iterdir())


def _damaged(folder: Path) -> dict[str, Path]:
    """Checkpoints as a user may have them: interrupted download, empty, a folder, foreign zip, garbage pickle ..."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        name: folder / f"{name}.pt"
        for name in ("truncated", "empty", "zip-of-garbage", "pickle-of-garbage", "text", "pickled-list")
    }
    files["truncated"].write_bytes(b"\x80\x04junk")
    files["empty"].write_bytes(b"")
    with zipfile.ZipFile(files["zip-of-garbage"], "w") as z:
        z.writestr("weights.bin", b"\x00" * 64)
    files["pickle-of-garbage"].write_bytes(b"\x80\x04" + bytes(range(7, 200)))
    files["text"].write_text("hello")
    files["pickled-list"].write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    files["folder"] = folder / "folder.pt"
    files["folder"].mkdir()
    files["missing"] = folder / "missing.pt"
    return files


DAMAGED = {"truncated": "looks truncated or corrupt", "empty": "is empty (0 bytes)",
           "zip-of-garbage": "zip archive but not a PyTorch checkpoint", "pickle-of-garbage": "truncated or corrupt",
           "text": "is not a PyTorch checkpoint", "pickled-list": "truncated or corrupt", "folder": "is a folder",
           "missing": "checkpoint not found"}  # fmt: skip


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_export_of_a_damaged_checkpoint(case: str, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    source = _damaged(tmp_path / "in")[case]
    before = snapshot(tmp_path)
    result = run_main(main, ["export", str(source), str(tmp_path / "GRM_ep0001.pth.tar")], capsys)
    check_one_line_failure(result, 2, PROG, [str(source), DAMAGED[case]])
    check_untouched(before, tmp_path)


@pytest.mark.parametrize("use", ["evaluate", "resume", "pretrained"])
def test_other_uses_of_a_truncated_checkpoint(use: str, synth_root: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    bad = tmp_path / "run" / "checkpoints" / "checkpoint_0001.pt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x80\x04junk")
    before = snapshot(tmp_path)
    if use == "evaluate":
        args = ["evaluate", str(bad), "--val-root", str(synth_root)]
    elif use == "resume":
        args = _run(tmp_path, synth_root, "--resume")
    else:
        args = [
            *TINY_RUN,
            "--got10k-dir",
            str(synth_root),
            "--output",
            str(tmp_path / "other"),
            "--pretrained",
            str(bad),
        ]
    result = run_main(main, args, capsys)
    check_one_line_failure(result, 2, PROG, [str(bad), "looks truncated or corrupt"])
    check_untouched(before, tmp_path)


def test_export_of_an_official_file_explains_the_formats(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    official = ckpt.save_official(tmp_path / "GRM_ep0001.pth.tar", build_model("tiny"), 1)
    result = run_main(main, ["export", str(official), str(tmp_path / "out.pth.tar")], capsys)
    check_one_line_failure(result, 2, PROG, ["is not a grm-train checkpoint"])
    assert not (tmp_path / "out.pth.tar").exists()


@pytest.fixture(scope="module")
def trained(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project checkpoint after one tiny epoch."""
    from grm.train.data.sources import DatasetRoots
    from grm.train.trainer import Trainer, TrainOptions

    out = tmp_path_factory.mktemp("trained")
    torch.set_num_threads(1)
    Trainer(
        TrainOptions(
            config="tiny",
            output=out,
            roots=DatasetRoots(explicit={"got10k": synth_root}),
            epochs=1,
            batch_size=2,
            samples_per_epoch=2,
            num_workers=0,
        )
    ).fit()
    return out / "checkpoints" / "checkpoint_0001.pt"


def test_export_says_what_it_wrote(trained: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "GRM_ep0001.pth.tar"
    result = run_main(main, ["export", str(trained), str(out)], capsys)
    assert result.code == 0 and out.is_file()
    assert result.stdout.splitlines()[-1] == f"wrote {out} (official-format checkpoint)"


def test_export_to_a_full_disk(trained: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """The output is a symlink to /dev/full: written in place (never replaced), ENOSPC is exit 2."""
    out = tmp_path / "GRM_ep0001.pth.tar"
    out.symlink_to("/dev/full")
    result = run_main(main, ["export", str(trained), str(out)], capsys)
    check_one_line_failure(result, 2, PROG, [f"cannot write {out}: no space left on the device"])
    assert out.is_symlink() and list(tmp_path.iterdir()) == [out]


def test_export_into_a_read_only_folder(trained: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    out = tmp_path / "ro" / "GRM_ep0001.pth.tar"
    with read_only_folder(tmp_path / "ro", monkeypatch):
        result = run_main(main, ["export", str(trained), str(out)], capsys)
        check_one_line_failure(result, 2, PROG, [f"cannot write {out}", "Read-only file system"])
        assert not any((tmp_path / "ro").iterdir())


# --- real processes: missing torch, Ctrl-C ----------------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], ["--help"], ["synth", "--help"]])
def test_missing_torch_is_one_line_naming_the_extra(
    argv: list[str], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = hide_modules_env(tmp_path_factory.mktemp("hide"), ["torch"])
    result = run_process(PROG, argv, tmp_path, env=env, timeout=120)
    check_one_line_failure(result, 2, PROG, ["torch", 'pip install "grm-tracker[train]"'])
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_saves_the_step_and_resume_finishes(synth_root: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Ctrl-C during the first iteration: it finishes, is saved, and --resume runs the other three."""
    args = [
        *TINY_RUN,
        "--samples-per-epoch",
        "8",
        "--got10k-dir",
        str(synth_root),
        "--output",
        str(tmp_path / "run"),
        "--log-interval",
        "1",
    ]
    result = run_interrupted(
        PROG, args, tmp_path, "grm.train.trainer:Trainer.train_step", pause=3.0, env={"OMP_NUM_THREADS": "1"}
    )
    saved = tmp_path / "run" / "checkpoints" / "checkpoint_0001_step000001.pt"
    line = check_one_line_failure(result, 130, PROG, [f"saved {saved} at epoch 1, iteration 1 of 4", "--resume"])
    assert line.startswith("grm-train: interrupted: ")
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]
    resumed = run_main(main, [*args, "--resume"], capsys)
    assert resumed.code == 0, resumed.stderr
    iterations = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl", "iter")]
    assert iterations == [1, 2, 3, 4]
    assert (tmp_path / "run" / "checkpoints" / "checkpoint_0001.pt").is_file()


def test_ctrl_c_in_synth_keeps_the_complete_sequences(tmp_path: Path) -> None:
    result = run_interrupted(
        PROG,
        ["synth", "--output", str(tmp_path / "data"), "--sequences", "3"],
        tmp_path,
        "grm.train.data.synth:write_sequence",
    )
    check_one_line_failure(
        result,
        130,
        PROG,
        [f"complete sequences in {tmp_path / 'data' / 'train'} are kept", "the same command writes the rest"],
    )
