"""grm-bench end to end with a stand-in backend: default run form, analyze, speed, pack, and error lines."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from grm.benchmarks import cli, engine
from grm.benchmarks.speed import Clip, measure_isolated

from .bench_fakes import FakeBackend, open_fake, still_boxes, write_boxes, write_frames
from .test_run import otb_tree

runner = CliRunner()


@pytest.fixture
def fake_models(monkeypatch, tmp_path):
    """Model files whose opening yields the fake backend."""
    monkeypatch.setattr(engine, "open_model", lambda path, **kw: FakeBackend())
    paths = []
    for name in ("a.onnx", "b.plan"):
        (tmp_path / name).write_bytes(b"")
        paths.append(str(tmp_path / name))
    return paths


def call_main(argv):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    return e.value.code


def test_default_form_runs_scores_and_resumes(tmp_path, fake_models, capsys):
    root = otb_tree(tmp_path / "otb")
    argv = [
        "--dataset",
        "otb",
        "--engine",
        fake_models[0],
        "--data-root",
        str(root),
        "--partial",
        "--results-dir",
        str(tmp_path / "res"),
    ]
    assert call_main(argv) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "res" / "a.onnx" / "otb"
    assert "2 sequences tracked, 0 already done" in out and "| a.onnx |" in out
    for name in (
        "otb_pytracking.md",
        "otb_pytracking.json",
        "otb_pytracking_success.png",
        "otb_pytracking_precision.png",
        "speed_summary.json",
        "Deer.txt",
        "KiteSurf_time.txt",
    ):
        assert (folder / name).is_file(), name
    speed = json.loads((folder / "speed_summary.json").read_text())
    assert speed["frames"] == 70 + 83 and speed["fps"] > 0 and set(speed["frame_latency_ms"]) == {"p50", "p90", "p99"}
    scores = json.loads((folder / "otb_pytracking.json").read_text())["trackers"][0]["summary"]
    assert scores["AUC"] == pytest.approx(100 * (20 / 21 + (41 * 20 + 43 * 7) / 84 / 21) / 2)
    assert call_main(argv) == 0
    assert "0 sequences tracked, 2 already done" in capsys.readouterr().out


def test_threshold_override_gets_its_own_folder(tmp_path, fake_models, capsys):
    root = otb_tree(tmp_path / "otb", ("Deer",))
    argv = [
        "run",
        "--dataset",
        "otb",
        "--engine",
        fake_models[0],
        "--data-root",
        str(root),
        "--partial",
        "--results-dir",
        str(tmp_path / "res"),
        "--threshold",
        "0.3",
        "--no-plots",
        "--shard",
        "1/1",
    ]
    assert call_main(argv) == 0
    manifest = json.loads((tmp_path / "res" / "a.onnx-thr0.3" / "otb" / "run_manifest.json").read_text())
    assert manifest["threshold"] == 0.3 and manifest["threshold_source"] == "override"


def test_analyze_merges_shards_and_compares_trackers(tmp_path, fake_models):
    root = otb_tree(tmp_path / "otb", ("Deer", "Skiing"))
    for shard in ("1/2", "2/2"):
        argv = [
            "--dataset",
            "otb",
            "--engine",
            fake_models[0],
            "--data-root",
            str(root),
            "--partial",
            "--results-dir",
            str(tmp_path / shard.replace("/", "of")),
            "--shard",
            shard,
        ]
        assert call_main(argv) == 0
    other = tmp_path / "other"
    write_boxes(other / "Deer.txt", still_boxes(71, (0, 0, 5, 5)))
    write_boxes(other / "Skiing.txt", still_boxes(81))
    shards = [str(tmp_path / f"{i}of2" / "a.onnx" / "otb") for i in (1, 2)]
    result = runner.invoke(
        cli.app,
        [
            "analyze",
            "--dataset",
            "otb",
            "--data-root",
            str(root),
            "--partial",
            "--results",
            shards[0],
            "--results",
            shards[1],
            "--results",
            f"base={other}",
            "--protocol",
            "otb",
            "--out",
            str(tmp_path / "rep"),
            "--no-plots",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "rep" / "otb_otb.json").read_text())
    assert [t["label"] for t in report["trackers"]] == ["a.onnx", "base"]
    assert report["trackers"][0]["summary"]["AUC"] == pytest.approx(100 * 20 / 21)
    assert report["trackers"][1]["per_sequence"]["Deer"]["AUC"] == pytest.approx(100 * 20 / 21 / 71)  # frame 0 only


def test_missing_sequences_without_partial_name_the_count_and_the_option(tmp_path, fake_models, capsys):
    root = otb_tree(tmp_path / "otb", ("Deer", "Skiing"))
    argv = [
        "--dataset",
        "otb",
        "--engine",
        fake_models[0],
        "--data-root",
        str(root),
        "--results-dir",
        str(tmp_path / "r"),
    ]
    assert call_main(argv) == 2
    captured = capsys.readouterr()
    line = captured.err.strip()
    assert len(line.splitlines()) == 1 and "--partial" in line and "only 2 of 100 sequences" in line, captured.err
    assert "Basketball" in line and captured.out == ""
    assert call_main([*argv, "--sequence", "Deer", "--no-analyze"]) == 0  # the selected sequence is present
    result = runner.invoke(cli.app, ["analyze", "--dataset", "otb", "--data-root", str(root), "--results", str(root)])
    assert result.exit_code == 2 and "--partial" in result.output and "2 of 100" in result.output
    capsys.readouterr()
    assert call_main([*argv, "--shard", "1/100"]) == 2  # that shard is Basketball alone
    assert "none of the 1 sequences asked for is present" in capsys.readouterr().err


def test_analyze_writes_to_the_current_folder_never_into_results(tmp_path, monkeypatch):
    root = otb_tree(tmp_path / "otb", ("Deer",))
    results = tmp_path / "res"
    write_boxes(results / "Deer.txt", still_boxes(71))
    before = sorted(p.name for p in results.iterdir())
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    base = ["analyze", "--dataset", "otb", "--data-root", str(root), "--partial", "--results", str(results)]
    result = runner.invoke(cli.app, base)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in results.iterdir()) == before
    assert {p.name for p in work.iterdir()} == {
        "otb_pytracking.md",
        "otb_pytracking.json",
        "otb_pytracking_success.png",
        "otb_pytracking_precision.png",
        "otb_pytracking_norm_precision.png",
    }
    assert "wrote otb_pytracking.json (JSON report)" in result.output.splitlines()
    for extra in (["--out", str(results)], ["--html", str(results / "r.html")]):
        result = runner.invoke(cli.app, [*base, "--no-plots", *extra])
        assert result.exit_code == 2 and "is the --results folder" in result.output, result.output
    monkeypatch.chdir(results)
    result = runner.invoke(cli.app, [*base[:-1], "."])
    assert result.exit_code == 2 and "--out" in result.output
    assert sorted(p.name for p in results.iterdir()) == before


def test_errors_are_one_line_with_status_2(tmp_path, monkeypatch):
    monkeypatch.delenv("GRM_LASOT_ROOT", raising=False)
    result = runner.invoke(cli.app, ["analyze", "--dataset", "lasot", "--results", str(tmp_path)])
    assert result.exit_code == 2
    assert "GRM_LASOT_ROOT" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(
        cli.app,
        [
            "run",
            "--dataset",
            "otb",
            "--engine",
            str(tmp_path / "none.onnx"),
            "--data-root",
            str(otb_tree(tmp_path / "otb", ("Deer",))),
            "--partial",
        ],
    )
    assert result.exit_code == 2 and "model file not found" in result.output
    assert call_main(["--dataset", "otb"]) == 2  # --engine missing: usage error


def test_speed_two_engines_json_and_results_md(tmp_path, fake_models, capsys):
    root = otb_tree(tmp_path / "otb", ("Deer",))
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\nAccuracy table stays.\n")
    argv = [
        "speed",
        "--engine",
        fake_models[0],
        "--engine",
        fake_models[1],
        "--source",
        str(root / "Deer"),
        "--frames",
        "20",
        "--warmup",
        "3",
        "--in-process",
        "--json",
        str(tmp_path / "s.json"),
        "--update-results",
        "--results-md",
        str(md),
    ]
    for _ in range(2):
        capsys.readouterr()
        assert call_main(argv) == 0
    report = json.loads((tmp_path / "s.json").read_text())
    a, b = report["engines"]
    assert a["frames"] == 19 and a["fps"] == pytest.approx(19 / a["track_seconds"])
    assert set(a["latency_ms"]) == {"preprocess", "inference", "postprocess", "total", "frame"}
    assert a["peak_rss_mb"] > 0 and report["ratios"][0]["engine"] == "b.plan"
    assert report["ratios"][0]["fps_ratio"] == pytest.approx(b["fps"] / a["fps"])
    text = md.read_text()
    assert text.count("grm-bench speed: begin") == 1 and "Accuracy table stays." in text and "| b.plan |" in text
    out = capsys.readouterr().out
    assert not out.lstrip().startswith("{") and len(out.splitlines()) < 30  # a table, not the JSON
    table = out.split("\n\n")[1].splitlines()
    assert table[0].split()[:3] == ["Engine", "Backend", "FPS"] and set(table[1]) == {"-", " "}
    assert table[3].split()[:2] == ["b.plan", "fake"] and table[3].split()[2] == f"{b['fps']:.1f}"
    assert f"wrote {tmp_path / 's.json'}" in out and f"wrote {md}" in out
    assert call_main([*argv[:11], "--in-process", "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["engines"][0]["label"] == "a.onnx"  # standard output is the JSON alone
    assert call_main(["speed", "--engine", fake_models[0], "--source", str(tmp_path)]) == 2
    assert "--box" in capsys.readouterr().err
    assert call_main(["speed", "--engine", fake_models[0], "--source", str(tmp_path), "--box", "nan,1,2,3"]) == 2
    assert "NaN" in capsys.readouterr().err  # the same --box reading as grm-run


def test_speed_in_a_fresh_process(tmp_path):
    root = otb_tree(tmp_path / "otb", ("Deer",))
    clip = Clip("Deer", (30.0, 20.0, 20.0, 20.0), files=tuple(sorted((root / "Deer" / "img").iterdir())), max_frames=10)
    result = measure_isolated(open_fake, clip, "fake", warmup=2)
    assert result.frames == 9 and result.peak_rss_mb > 10 and result.backend == "fake"


def test_pack_got10k_and_trackingnet(tmp_path):
    res = tmp_path / "res"
    write_boxes(res / "GOT-10k_Test_000001.txt", [[1.9, 2.5, 30.99, 40.0], [-0.5, 2, 3, 4]])
    (res / "GOT-10k_Test_000001_time.txt").write_text("0.5\n0.01\n")
    write_boxes(res / "GOT-10k_Test_000001_all_boxes.txt", [[0, 0, 1, 1]])
    result = runner.invoke(cli.app, ["pack", "--dataset", "got10k_test", "--results", str(res)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(res / "got10k_submit.zip") as z:
        assert sorted(z.namelist()) == [
            "GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt",
            "GOT-10k_Test_000001/GOT-10k_Test_000001_time.txt",
        ]
        assert z.read("GOT-10k_Test_000001/GOT-10k_Test_000001_001.txt").decode() == "1,2,30,40\n0,2,3,4\n"
    assert (res / "GOT-10k_Test_000001.txt").is_file()  # raw results are kept

    data = tmp_path / "tn"
    write_boxes(data / "TEST" / "anno" / "seq_a.txt", still_boxes(1))
    write_frames(data / "TEST" / "frames" / "seq_a" / f"{k}.jpg" for k in range(3))
    tn = tmp_path / "tnres"
    write_boxes(tn / "seq_a.txt", np.array([[1.5, 2.5, 3.5, 4.5]] * 2))
    result = runner.invoke(
        cli.app, ["pack", "--dataset", "trackingnet", "--results", str(tn), "--data-root", str(data)]
    )
    assert result.exit_code == 2 and "2 rows for 3 frames" in result.output
    write_boxes(tn / "seq_a.txt", np.array([[1.5, 2.5, 3.5, 4.5]] * 3))
    result = runner.invoke(
        cli.app, ["pack", "--dataset", "trackingnet", "--results", str(tn), "--data-root", str(data)]
    )
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(tn / "trackingnet_submit.zip") as z:
        assert z.namelist() == ["seq_a.txt"] and z.read("seq_a.txt").decode() == "1,2,3,4\n" * 3
