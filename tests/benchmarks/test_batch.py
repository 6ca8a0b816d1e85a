"""Several sequences at once (``grm-bench --batch``), worker processes spread over devices (``--devices``), and
shards run as a job array and merged by ``analyze``.

The batched model is the bundled demo model run once per row (:class:`LoopingBackend`), so every batch size
must write exactly the result files of a batch-1 run. Processes stand in for GPUs: each worker records the
device its model was opened on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from grm.benchmarks import cli
from grm.benchmarks.analysis import analyze
from grm.benchmarks.datasets import open_dataset
from grm.benchmarks.engine import EngineOpener
from grm.benchmarks.results import result_sets
from grm.benchmarks.run import FRAME_TIME, on_device, parse_ints, run_benchmark
from grm.benchmarks.speed import Clip, measure
from grm.benchmarks.textio import read_boxes
from grm.runtime import contract
from grm.runtime.backends import open_model
from grm.runtime.backends.manifest import EngineManifest, write_manifest
from grm.runtime.demo import DEMO_MODEL, demo_clip
from grm.runtime.errors import ConfigError
from tests.runtime.runtime_fakes import DeviceSession, tiny_metadata
from tests.runtime.trt_fakes import PLAN_BYTES, Engine, FakeCudart, brightness_outputs, make_trt, tiny_tensors

from .bench_fakes import write_boxes

LENGTHS = (9, 4, 12, 1, 6, 7)  # frames per sequence; the one-frame sequence has nothing to track


class LoopingBackend:
    """The demo model as a batch-N model (N = 0: dynamic): one batch-1 call per row; ``calls`` keeps the rows."""

    def __init__(self, batch: int, device: int | None = None) -> None:
        self.inner = open_model(DEMO_MODEL, backend="onnxruntime", threads=1)
        self.metadata = dataclasses.replace(self.inner.metadata, batch=batch)
        self.name = f"looping[{batch}]"
        self.device = device
        self.calls: list[int] = []

    def run(self, inputs):
        rows = inputs[contract.SEARCH].shape[0]
        assert rows == self.metadata.batch or (self.metadata.batch == 0 and rows >= 1), rows
        self.calls.append(rows)
        outs = [self.inner.run({k: v[r : r + 1] for k, v in inputs.items()}) for r in range(rows)]
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def close(self) -> None:
        self.inner.close()


@dataclasses.dataclass(frozen=True)
class LoopingOpener:
    """Picklable opener of :class:`LoopingBackend`; with ``record``, every opening writes ``pid device`` there."""

    batch: int
    device: int | None = None
    record: str | None = None
    opened: ClassVar[list[LoopingBackend]] = []  # this process's openings

    def __call__(self) -> LoopingBackend:
        if self.record is not None:
            path = Path(self.record) / f"{os.getpid()}-{time.monotonic_ns()}"
            path.write_text(f"{os.getpid()} {self.device}\n")
        backend = LoopingBackend(self.batch, self.device)
        LoopingOpener.opened.append(backend)
        return backend

    def with_device(self, device: int) -> LoopingOpener:
        return dataclasses.replace(self, device=device)


def open_demo():
    return open_model(DEMO_MODEL, backend="onnxruntime", threads=1)


def got10k_val(root: Path, lengths=LENGTHS) -> Path:
    """GOT-10k validation layout: one generated clip per sequence (a textured object moving over a texture)."""
    val = root / "val"
    names = []
    for k, n in enumerate(lengths, start=1):
        name = f"GOT-10k_Val_{k:06d}"
        images, boxes = demo_clip(frames=60, height=120, width=160, seed=k)
        for i in range(n):
            (val / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(val / name / f"{i + 1:08d}.jpg"), images[i])
        write_boxes(val / name / "groundtruth.txt", boxes[:n])
        names.append(name)
    (val / "list.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory) -> Path:
    return got10k_val(tmp_path_factory.mktemp("got10k"))


@pytest.fixture(scope="module")
def reference(dataset_root: Path, tmp_path_factory) -> Path:
    """Result files of a batch-1 run (the single-target Tracker with the batch-1 demo model)."""
    folder = tmp_path_factory.mktemp("batch1")
    ds = open_dataset("got10k_val", dataset_root)
    summary = run_benchmark(ds, folder, open_demo, label="demo", model="demo.onnx")
    assert len(summary.ran) == len(LENGTHS)
    manifest = json.loads((folder / "run_manifest.json").read_text())
    assert manifest["batch"] == 1 and manifest["frame_time"] == FRAME_TIME["single"]
    return folder


def assert_same_results(folder: Path, reference: Path, names) -> None:
    for name in names:
        got, want = read_boxes(folder / f"{name}.txt"), read_boxes(reference / f"{name}.txt")
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=0, err_msg=name)


def active_per_step(lengths, batch: int) -> list[int]:
    """Sequences tracked in each step when a finished sequence's slot takes the next one at once."""
    queue, slots, active = [n - 1 for n in lengths], [], []
    while queue or slots:
        while len(slots) < batch and queue:
            left = queue.pop(0)
            if left:
                slots.append(left)
        if slots:
            active.append(len(slots))
            slots = [s - 1 for s in slots if s > 1]
    return active


@pytest.mark.parametrize("model_batch, batch", [(4, 4), (0, 3), (2, 4)])
def test_batched_run_writes_the_batch_1_result_files(dataset_root, reference, tmp_path, model_batch, batch):
    ds = open_dataset("got10k_val", dataset_root)
    names = ds.sequence_names()
    LoopingOpener.opened.clear()
    start = time.perf_counter()
    summary = run_benchmark(ds, tmp_path, LoopingOpener(model_batch), label="demo", model="m", batch=batch)
    elapsed = time.perf_counter() - start
    assert sorted(r.name for r in summary.ran) == names and not summary.skipped
    assert_same_results(tmp_path, reference, names)
    for name in names:
        assert (tmp_path / f"{name}.txt").read_text() == (reference / f"{name}.txt").read_text()

    (backend,) = LoopingOpener.opened
    active = active_per_step(LENGTHS, batch)
    assert sum(active) == sum(n - 1 for n in LENGTHS) and max(active) == batch
    if model_batch == 0:
        assert backend.calls == active  # one call per step with every active sequence
    else:
        assert len(backend.calls) == sum(-(-a // model_batch) for a in active) and set(backend.calls) == {model_batch}

    # time files: one row per frame; sequences started together share each step's time equally
    times = {n: (tmp_path / f"{n}_time.txt").read_text().split() for n in names}
    assert all(len(times[n]) == len(read_boxes(tmp_path / f"{n}.txt")) for n in names)
    first = [n for n, length in zip(names, LENGTHS, strict=True) if length > 1][: min(batch, 3)]
    shared = min(len(times[n]) for n in first)
    assert len({tuple(times[n][1:shared]) for n in first}) == 1
    # each step's time is divided among its sequences: the shares add up to less than the run took
    assert sum(float(t) for n in names for t in times[n][1:]) < elapsed
    manifest = json.loads((tmp_path / "run_manifest.json").read_text())
    assert manifest["batch"] == batch and manifest["batches"] == [batch] and manifest["model_batch"] == model_batch
    assert manifest["frame_time"] == FRAME_TIME["batched"]
    assert "divided by the number of sequences" in FRAME_TIME["batched"]


def test_default_batch_is_the_models_and_resume_records_both_batches(dataset_root, reference, tmp_path):
    ds = open_dataset("got10k_val", dataset_root)
    names = ds.sequence_names()
    LoopingOpener.opened.clear()
    run_benchmark(ds, tmp_path, LoopingOpener(2), label="demo", model="m")  # batch = the model's: 2
    assert set(LoopingOpener.opened[0].calls) == {2}
    assert json.loads((tmp_path / "run_manifest.json").read_text())["batch"] == 2
    for name in names[1:3]:
        (tmp_path / f"{name}.txt").unlink()
    stamp = (tmp_path / f"{names[0]}.txt").stat().st_mtime_ns
    summary = run_benchmark(ds, tmp_path, open_demo, label="demo", model="m", batch=1)
    assert sorted(r.name for r in summary.ran) == names[1:3] and len(summary.skipped) == len(names) - 2
    assert (tmp_path / f"{names[0]}.txt").stat().st_mtime_ns == stamp
    assert_same_results(tmp_path, reference, names)
    manifest = json.loads((tmp_path / "run_manifest.json").read_text())
    assert manifest["batch"] == 1 and manifest["batches"] == [1, 2]


def test_workers_spread_over_devices_with_batches(dataset_root, reference, tmp_path):
    """Two worker processes standing in for GPUs 5 and 7, each tracking two sequences at a time."""
    ds = open_dataset("got10k_val", dataset_root)
    record = tmp_path / "opened"
    record.mkdir()
    seen = []
    summary = run_benchmark(
        ds,
        tmp_path / "r",
        LoopingOpener(2, record=str(record)),
        label="demo",
        model="m",
        batch=2,
        devices=(5, 7),
        on_sequence=lambda r: seen.append(r.name),
    )
    names = ds.sequence_names()
    assert sorted(r.name for r in summary.ran) == names and sorted(seen) == names
    assert_same_results(tmp_path / "r", reference, names)
    opened = [p.read_text().split() for p in record.iterdir()]
    parent = [d for pid, d in opened if int(pid) == os.getpid()]
    workers = sorted(d for pid, d in opened if int(pid) != os.getpid())
    assert parent == ["5"] and workers == ["5", "7"]  # the parent reads the metadata on the first device
    assert len({pid for pid, _ in opened}) == 3
    assert json.loads((tmp_path / "r" / "run_manifest.json").read_text())["devices"] == [5, 7]


def test_batch_one_workers_get_a_device_each(dataset_root, reference, tmp_path):
    ds = open_dataset("got10k_val", dataset_root)
    record = tmp_path / "opened"
    record.mkdir()
    names = ds.sequence_names()[:3]
    run_benchmark(
        ds,
        tmp_path / "r",
        LoopingOpener(1, record=str(record)),
        label="demo",
        model="m",
        only=tuple(names),
        devices=(0, 1),
        workers=3,
    )
    assert_same_results(tmp_path / "r", reference, names)
    workers = sorted(d for pid, d in (p.read_text().split() for p in record.iterdir()) if int(pid) != os.getpid())
    assert workers == ["0", "0", "1"]  # three workers round-robin over two devices


def test_device_reaches_onnx_runtime_providers_and_tensorrt(monkeypatch, tmp_path):
    import onnxruntime as ort

    sessions: list[DeviceSession] = []
    real = ort.InferenceSession

    def factory(path, sess_options=None, providers=None):
        sessions.append(DeviceSession(real, path, sess_options=sess_options, providers=providers))
        return sessions[-1]

    monkeypatch.setattr(
        ort,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(ort, "InferenceSession", factory)
    monkeypatch.setenv("GRM_TRT_CACHE", str(tmp_path / "trt-cache"))
    EngineOpener(str(DEMO_MODEL), "ort-tensorrt").with_device(3)().close()
    options = dict(sessions[-1].requested)
    assert options["TensorrtExecutionProvider"]["device_id"] == 3 and options["CUDAExecutionProvider"]["device_id"] == 3
    EngineOpener(str(DEMO_MODEL), "ort-cuda")().close()
    assert dict(sessions[-1].requested)["CUDAExecutionProvider"]["device_id"] == 0

    class Cudart(FakeCudart):
        def __init__(self) -> None:
            super().__init__()
            self.devices: list[int] = []

        def cudaSetDevice(self, device: int):
            self.devices.append(device)
            return super().cudaSetDevice(device)

    plan = tmp_path / "tiny.plan"
    plan.write_bytes(PLAN_BYTES)
    manifest = EngineManifest(
        metadata=tiny_metadata(),
        tensorrt_version="10.13.0.35",
        gpu_name="NVIDIA Fake GPU",
        compute_capability=(8, 6),
        plan_sha256=hashlib.sha256(PLAN_BYTES).hexdigest(),
    )
    write_manifest(plan, manifest)
    cudart = Cudart()
    monkeypatch.setitem(sys.modules, "tensorrt", make_trt(Engine(tiny_tensors(), brightness_outputs)))
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    monkeypatch.setitem(sys.modules, "cuda.bindings.utils", types.SimpleNamespace(get_cuda_native_handle=id))
    EngineOpener(str(plan), "tensorrt").with_device(2)().close()
    assert cudart.devices == [2]


def test_device_and_batch_options_are_checked():
    assert parse_ints("0,1,3", "--devices") == (0, 1, 3)
    for bad in ("0,x", "1,1", "-1", ""):
        with pytest.raises(ConfigError, match="--devices"):
            parse_ints(bad, "--devices")
    with pytest.raises(ConfigError, match="cannot open the model on a chosen device"):
        on_device(open_demo, 1)


JOB_ARRAY = """
set -e
for SLURM_ARRAY_TASK_ID in 0 1 2; do   # what a Slurm job array of 3 tasks runs, one task per node
  SLURM_ARRAY_TASK_COUNT=3 "$BENCH" --dataset got10k_val --engine "$MODEL" --data-root "$ROOT" \\
      --results-dir "shard$SLURM_ARRAY_TASK_ID" --shard $((SLURM_ARRAY_TASK_ID+1))/3 --batch 2 --threads 1 \\
      --no-analyze > "log$SLURM_ARRAY_TASK_ID" 2>&1 &
done
wait
"$BENCH" analyze --dataset got10k_val --data-root "$ROOT" --results shard0/demo.onnx/got10k_val \\
    --results shard1/demo.onnx/got10k_val --results shard2/demo.onnx/got10k_val --no-plots
"""


def test_job_array_of_shards_merged_by_analyze(dataset_root, reference, tmp_path):
    """Three processes standing in for the nodes of a job array, then one analyze over their shard folders."""
    bench = Path(sys.executable).with_name("grm-bench")
    env = {**os.environ, "BENCH": str(bench), "MODEL": str(DEMO_MODEL), "ROOT": str(dataset_root)}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        ["bash", "-c", JOB_ARRAY], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr + "".join(p.read_text() for p in tmp_path.glob("log*"))
    names = open_dataset("got10k_val", dataset_root).sequence_names()
    shards = [tmp_path / f"shard{k}" / "demo.onnx" / "got10k_val" for k in range(3)]
    for k, folder in enumerate(shards):
        mine = names[k::3]
        assert sorted(p.stem for p in folder.glob("*.txt") if not p.stem.endswith("_time")) == sorted(mine)
        assert_same_results(folder, reference, mine)
        assert json.loads((folder / "run_manifest.json").read_text())["batch"] == 2
    assert "got10k_val" in result.stdout and (tmp_path / "got10k_val_pytracking.json").is_file()
    ds = open_dataset("got10k_val", dataset_root)
    merged = analyze(ds, result_sets([str(f) for f in shards]))
    alone = analyze(ds, result_sets([str(reference)]))
    (tracker,), want = merged.trackers, alone.trackers[0].summary
    assert tracker.summary.sequences == len(names) and tracker.summary.auc == pytest.approx(want.auc, abs=1e-9)
    np.testing.assert_allclose(tracker.summary.success_curve, want.success_curve, atol=1e-12)


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory, upstream_tiny: Path) -> dict[str, Path]:
    """The tiny fixture checkpoint exported at batch 1, 4 and dynamic (grm-export, no parity run)."""
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("exports")
    exports = {}
    for batch in ("1", "4", "dynamic"):
        path = folder / f"grm_tiny_b{batch}.onnx"
        command = [
            str(Path(sys.executable).with_name("grm-export")),
            "--config",
            "tiny",
            "--checkpoint",
            str(upstream_tiny / "GRM_ep0001.pth.tar"),
            "--output",
            str(path),
            "--batch",
            batch,
            "--no-verify",
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        assert result.returncode == 0, result.stderr
        exports[batch] = path
    return exports


@pytest.mark.slow
def test_real_batched_exports_write_the_batch_1_result_files(dataset_root, tmp_path, tiny_exports):
    ds = open_dataset("got10k_val", dataset_root)
    names = ds.sequence_names()
    runs = {"1": None, "4": 4, "dynamic": 3}
    for key, batch in runs.items():
        opener = EngineOpener(str(tiny_exports[key]), "onnxruntime", threads=1)
        summary = run_benchmark(ds, tmp_path / key, opener, label=key, model=key, batch=batch)
        assert len(summary.ran) == len(names)
        manifest = json.loads((tmp_path / key / "run_manifest.json").read_text())
        assert manifest["batch"] == (batch or 1) and manifest["model_batch"] == {"1": 1, "4": 4, "dynamic": 0}[key]
    assert_same_results(tmp_path / "4", tmp_path / "1", names)
    assert_same_results(tmp_path / "dynamic", tmp_path / "1", names)


def demo_clip_files(dataset_root: Path, name: str = "GOT-10k_Val_000003") -> Clip:
    seq = open_dataset("got10k_val", dataset_root).load(name)
    return Clip(name, tuple(float(v) for v in seq.gt[0]), files=tuple(seq.frames))


def test_speed_at_several_batches_counts_target_frames(dataset_root):
    clip = demo_clip_files(dataset_root)
    LoopingOpener.opened.clear()
    one = measure(LoopingOpener(0), clip, "one", warmup=2, batch=1)
    four = measure(LoopingOpener(0), clip, "four", warmup=2, batch=4)
    default = measure(LoopingOpener(3), clip, "three", warmup=2)  # a static batch-3 model: 3 targets per frame
    assert [b.calls[-1] for b in LoopingOpener.opened] == [1, 4, 3]
    assert set(LoopingOpener.opened[1].calls) == {4}  # warm-up and timed frames: one call with every target
    assert (one.batch, four.batch, default.batch) == (1, 4, 3) and one.frames == four.frames == 11
    assert four.fps == pytest.approx(11 * 4 / four.track_seconds) and one.fps == pytest.approx(11 / one.track_seconds)
    assert four.latency_ms["frame"]["p50"] > one.latency_ms["frame"]["p50"]  # a frame of 4 targets takes longer
    assert four.cpu_fps >= 0.95 * four.fps  # one inference thread: CPU seconds <= wall seconds


def test_speed_cli_batches_rounds_and_isolated_memory(dataset_root, tmp_path, capsys):
    out = tmp_path / "speed.json"
    argv = [
        "speed",
        "--engine",
        str(DEMO_MODEL),
        "--source",
        str(dataset_root / "val" / "GOT-10k_Val_000003"),
        "--box",
        "60,40,40,40",
        "--frames",
        "6",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--batch",
        "1,2",
        "--rounds",
        "2",
        "--json",
        str(out),
    ]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    one, two = report["engines"]
    assert (one["label"], two["label"]) == ("demo.onnx [batch 1]", "demo.onnx [batch 2]")
    assert one["rounds"] == two["rounds"] == 2 and one["frames"] == two["frames"] == 2 * 5
    assert two["fps"] == pytest.approx(2 * 10 / two["track_seconds"])
    assert 50 < one["peak_rss_mb"] < 4096 and two["peak_rss_mb"] > 50  # each measured in its own process
    assert report["ratios"][0]["fps_ratio"] == pytest.approx(two["fps"] / one["fps"])
    table = capsys.readouterr().out
    assert "demo.onnx [batch 2]" in table and "target-frames" in table
    with pytest.raises(SystemExit) as e:
        cli.main([*argv[:-6], "--batch", "0,2"])
    assert e.value.code == 2 and "--batch 0,2" in capsys.readouterr().err
