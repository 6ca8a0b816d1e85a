"""The one-pass runner: result files, resume, threshold presets, shards, worker processes, killed runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from grm.benchmarks.analysis import analyze
from grm.benchmarks.datasets import open_dataset
from grm.benchmarks.results import result_sets
from grm.benchmarks.run import parse_shard, run_benchmark, select
from grm.benchmarks.textio import read_boxes
from grm.runtime.errors import ConfigError, InputError

from .bench_fakes import BOX, FakeBackend, open_fake, still_boxes, write_boxes, write_frames

HERE = Path(__file__).parent


def otb_tree(root: Path, names=("Deer", "KiteSurf")) -> Path:
    """OTB-layout videos with frames; KiteSurf's target jumps 10 px right from frame 42 (PNG frames)."""
    sizes = {"Deer": (71, "jpg"), "KiteSurf": (84, "png"), "Skiing": (81, "jpg")}
    for name in names:
        n, ext = sizes[name]
        gt = still_boxes(n)
        if name == "KiteSurf":
            gt[41:, 0] += 10
        write_boxes(root / name / "groundtruth_rect.txt", gt)
        write_frames(root / name / "img" / f"{k:04d}.{ext}" for k in range(1, n + 1))
    return root


def run(ds, folder, opener=open_fake, **kw):
    return run_benchmark(ds, folder, opener, label="fake", model="fake.onnx", **kw)


def test_results_files_resume_and_scores(tmp_path):
    ds = open_dataset("otb", otb_tree(tmp_path / "otb"), partial=True)
    out = tmp_path / "results" / "fake" / "otb"
    summary = run(ds, out)
    assert [r.name for r in summary.ran] == ["Deer", "KiteSurf"] and summary.threshold == 0.0
    deer = read_boxes(out / "Deer.txt")
    assert deer.shape == (71, 4) and np.allclose(deer, BOX, atol=1e-3)
    times = (out / "Deer_time.txt").read_text().split()
    assert len(times) == 71 and all(float(t) >= 0 for t in times)
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["threshold"] == 0.0 and manifest["threshold_source"].startswith("preset OTB")
    assert manifest["label"] == "fake" and manifest["model_config"] == "tiny"
    assert summary.fps is not None and summary.fps > 0

    stamp = (out / "Deer.txt").stat().st_mtime_ns
    (out / "KiteSurf.txt").unlink()
    again = run(ds, out)
    assert again.skipped == ["Deer"] and [r.name for r in again.ran] == ["KiteSurf"]
    assert (out / "Deer.txt").stat().st_mtime_ns == stamp

    report = analyze(ds, result_sets([str(out)]))
    assert report.trackers[0].label == "fake"
    # Deer: every frame IoU 1 -> success 1 below t = 1; KiteSurf: 41 frames IoU 1, 43 frames IoU 10*20/(800-200)
    kite = report.trackers[0].per_sequence["KiteSurf"]
    assert kite.success[6] == pytest.approx(1.0)  # IoU 1/3 > 0.3
    assert kite.success[7] == pytest.approx(41 / 84)  # ... but not > 0.35
    assert report.trackers[0].summary.auc == pytest.approx(100 * (20 / 21 + (41 * 20 + 43 * 7) / 84 / 21) / 2)
    assert report.trackers[0].fps is not None


def test_threshold_preset_override_and_mismatch(tmp_path):
    ds = open_dataset("otb", otb_tree(tmp_path / "otb", ("Deer",)), partial=True)
    backend = FakeBackend()
    run_benchmark(ds, tmp_path / "a", lambda: backend, label="x", model="m", threshold=0.3)
    assert set(backend.thresholds) == {np.float32(0.3)} and backend.closed
    manifest = json.loads((tmp_path / "a" / "run_manifest.json").read_text())
    assert manifest["threshold"] == 0.3 and manifest["threshold_source"] == "override"
    (tmp_path / "a" / "Deer.txt").unlink()
    with pytest.raises(ConfigError, match="threshold=0.3"):
        run(ds, tmp_path / "a")  # the preset for otb is 0; mixing is refused


def test_uav_preset_comes_from_metadata(tmp_path):
    n = 133
    write_boxes(tmp_path / "anno" / "UAV123" / "uav2.txt", still_boxes(n))
    write_frames(tmp_path / "data_seq" / "UAV123" / "uav2" / f"{k:06d}.jpg" for k in range(1, n + 1))
    ds = open_dataset("uav", tmp_path, partial=True)
    backend = FakeBackend()
    summary = run_benchmark(ds, tmp_path / "r", lambda: backend, label="x", model="m")
    assert summary.threshold == 0.55 and set(backend.thresholds) == {np.float32(0.55)}
    assert read_boxes(tmp_path / "r" / "uav_uav2.txt").shape == (n, 4)


def test_shards_and_sequence_selection():
    names = [f"s{i}" for i in range(7)]
    assert parse_shard("2/3") == (2, 3)
    shards = [select(names, (i, 3)) for i in (1, 2, 3)]
    assert sorted(sum(shards, [])) == names and shards[1] == ["s1", "s4"]
    assert select(names, only=("s5", "s2")) == ["s2", "s5"]
    for bad in ("0/2", "3/2", "x"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_worker_processes_match_single_process(tmp_path):
    ds = open_dataset("otb", otb_tree(tmp_path / "otb", ("Deer", "Skiing")), partial=True)
    run(ds, tmp_path / "one")
    summary = run(ds, tmp_path / "two", workers=2)
    assert sorted(r.name for r in summary.ran) == ["Deer", "Skiing"]
    for name in ("Deer", "Skiing"):
        assert (tmp_path / "one" / f"{name}.txt").read_text() == (tmp_path / "two" / f"{name}.txt").read_text()


def test_corrupt_frame_is_named(tmp_path):
    ds = open_dataset("otb", otb_tree(tmp_path / "otb", ("Deer",)), partial=True)
    (tmp_path / "otb" / "Deer" / "img" / "0005.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=r"0005.jpg: OpenCV cannot decode"):
        run(ds, tmp_path / "r")
    assert not (tmp_path / "r" / "Deer.txt").exists()


KILL_SCRIPT = """
import sys
from bench_fakes import open_slow_fake
from grm.benchmarks.datasets import open_dataset
from grm.benchmarks.run import run_benchmark
ds = open_dataset("otb", sys.argv[1], partial=True)
run_benchmark(ds, sys.argv[2], open_slow_fake, label="fake", model="m")
"""


def test_killed_run_resumes_without_losing_or_duplicating(tmp_path):
    ds = open_dataset("otb", otb_tree(tmp_path / "otb", ("Deer", "KiteSurf", "Skiing")), partial=True)
    out = tmp_path / "r"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "otb"), str(out)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (out / "Deer.txt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # well inside KiteSurf (84 frames x 20 ms)
    finally:
        proc.kill()
        proc.wait()
    assert (out / "Deer.txt").exists() and not (out / "Skiing.txt").exists()
    stamp = (out / "Deer.txt").stat().st_mtime_ns
    summary = run(ds, out)
    assert summary.skipped == ["Deer"] and sorted(r.name for r in summary.ran) == ["KiteSurf", "Skiing"]
    assert (out / "Deer.txt").stat().st_mtime_ns == stamp
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert visible == sorted(
        [
            "Deer.txt",
            "Deer_time.txt",
            "KiteSurf.txt",
            "KiteSurf_time.txt",
            "Skiing.txt",
            "Skiing_time.txt",
            "run_manifest.json",
        ]
    )
    for seq in ds.sequences():
        assert len(read_boxes(out / f"{seq.name}.txt")) == len(seq)
