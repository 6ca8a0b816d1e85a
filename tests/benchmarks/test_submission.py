"""grm-bench pack: only the dataset's sequences go into a server zip; anything else is named, or skipped."""

from __future__ import annotations

import json
import logging
import zipfile

import pytest
from typer.testing import CliRunner

from grm.benchmarks import cli

from .bench_fakes import still_boxes, write_boxes, write_frames

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_dataset_env(monkeypatch):
    for name in ("GRM_GOT10K_TEST_ROOT", "GRM_TRACKINGNET_ROOT"):
        monkeypatch.delenv(name, raising=False)


def pack(*args: str):
    return runner.invoke(cli.app, ["pack", *args])


def got10k_results(folder):
    write_boxes(folder / "GOT-10k_Test_000001.txt", still_boxes(3))
    (folder / "GOT-10k_Test_000001_time.txt").write_text("0.5\n0.01\n0.01\n")
    write_boxes(folder / "GOT-10k_Test_000001_all_scores.txt", still_boxes(1))
    write_boxes(folder / "got-10k_test_000002.txt", still_boxes(3))  # another spelling of a test sequence
    return folder


def test_stray_files_are_an_error_that_names_them(tmp_path):
    res = got10k_results(tmp_path / "res")
    (res / "notes.txt").write_text("tried threshold 0.3\n")
    write_boxes(res / "GOT-10k_Test_000181.txt", still_boxes(3))  # the test set ends at 000180
    result = pack("--dataset", "got10k_test", "--results", str(res))
    assert result.exit_code == 2
    assert "GOT-10k_Test_000181.txt, notes.txt are not a result of a sequence" in result.output
    assert "--ignore-extra" in result.output and not (res / "got10k_submit.zip").exists()


def test_ignore_extra_skips_them_with_a_warning(tmp_path, caplog):
    res = got10k_results(tmp_path / "res")
    (res / "notes.txt").write_text("tried threshold 0.3\n")
    (res / "notes_time.txt").write_text("0.1\n")
    with caplog.at_level(logging.WARNING):
        result = pack("--dataset", "got10k_test", "--results", str(res), "--ignore-extra")
    assert result.exit_code == 0, result.output
    assert "skipped 2 files" in caplog.text and "notes.txt" in caplog.text and "notes_time.txt" in caplog.text
    with zipfile.ZipFile(res / "got10k_submit.zip") as z:
        assert sorted(z.namelist()) == [
            "GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt",
            "GOT-10k_Test_000001/GOT-10k_Test_000001_time.txt",
            "GOT-10k_Test_000002/GOT-10k_Test_000002_001.txt",  # the server's spelling
        ]


def test_the_dataset_list_decides_with_a_data_root(tmp_path):
    data = tmp_path / "data"
    for seq in ("GOT-10k_Test_000001", "GOT-10k_Test_000002"):
        write_boxes(data / "test" / seq / "groundtruth.txt", still_boxes(1))
        write_frames(data / "test" / seq / f"{k:08d}.jpg" for k in range(1, 4))
    (data / "test" / "list.txt").write_text("GOT-10k_Test_000001\nGOT-10k_Test_000002\n")
    res = got10k_results(tmp_path / "res")
    write_boxes(res / "GOT-10k_Test_000003.txt", still_boxes(3))  # a real test name, but not in this tree
    result = pack("--dataset", "got10k_test", "--results", str(res), "--data-root", str(data))
    assert result.exit_code == 2 and "GOT-10k_Test_000003.txt is not a result of a sequence" in result.output
    (res / "GOT-10k_Test_000003.txt").unlink()
    result = pack("--dataset", "got10k_test", "--results", str(res), "--data-root", str(data))
    assert result.exit_code == 0, result.output
    write_boxes(res / "GOT-10k_Test_000002.txt", still_boxes(2))
    (res / "got-10k_test_000002.txt").unlink()
    result = pack("--dataset", "got10k_test", "--results", str(res), "--data-root", str(data))
    assert result.exit_code == 2 and "GOT-10k_Test_000002.txt has 2 rows for 3 frames" in result.output


def test_each_result_file_is_read_once(tmp_path, monkeypatch):
    from grm.benchmarks import submission
    from grm.benchmarks.textio import read_boxes

    data = tmp_path / "data"
    for seq in ("GOT-10k_Test_000001", "GOT-10k_Test_000002"):
        write_boxes(data / "test" / seq / "groundtruth.txt", still_boxes(1))
        write_frames(data / "test" / seq / f"{k:08d}.jpg" for k in range(1, 4))
    (data / "test" / "list.txt").write_text("GOT-10k_Test_000001\nGOT-10k_Test_000002\n")
    res = got10k_results(tmp_path / "res")
    read = []
    monkeypatch.setattr(submission, "read_boxes", lambda path: (read.append(path.name), read_boxes(path))[1])
    result = pack("--dataset", "got10k_test", "--results", str(res), "--data-root", str(data))  # rows checked
    assert result.exit_code == 0, result.output
    assert sorted(read) == ["GOT-10k_Test_000001.txt", "got-10k_test_000002.txt"]
    with zipfile.ZipFile(res / "got10k_submit.zip") as z:
        assert z.read("GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt").decode().count("\n") == 3


def test_trackingnet_needs_the_dataset_or_a_manifest_naming_it(tmp_path):
    data = tmp_path / "tn"
    write_boxes(data / "TEST" / "anno" / "seq_a.txt", still_boxes(1))
    write_frames(data / "TEST" / "frames" / "seq_a" / f"{k}.jpg" for k in range(2))
    res = tmp_path / "res"
    write_boxes(res / "seq_a.txt", still_boxes(2))
    write_boxes(res / "seq_b.txt", still_boxes(2))
    result = pack("--dataset", "trackingnet", "--results", str(res))
    assert result.exit_code == 2 and "--data-root or $GRM_TRACKINGNET_ROOT" in result.output
    (res / "run_manifest.json").write_text(json.dumps({"dataset": "trackingnet", "data_root": str(data)}))
    result = pack("--dataset", "trackingnet", "--results", str(res))
    assert result.exit_code == 2 and "seq_b.txt is not a result" in result.output
    result = pack("--dataset", "trackingnet", "--results", str(res), "--ignore-extra")
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(res / "trackingnet_submit.zip") as z:
        assert z.namelist() == ["seq_a.txt"]
    (res / "run_manifest.json").write_text(json.dumps({"dataset": "got10k_test", "data_root": str(data)}))
    result = pack("--dataset", "trackingnet", "--results", str(res))
    assert result.exit_code == 2 and "holds results for got10k_test" in result.output
