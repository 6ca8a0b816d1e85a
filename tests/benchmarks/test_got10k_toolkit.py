"""The official GOT-10k toolkit (PyPI ``got10k``) on the project's own outputs.

A small val set from ``grm-train synth`` is tracked by ``grm-bench`` with the bundled demo model; the toolkit
reads that data and the result files unchanged (only moved into its ``<tracker>/<seq>/<seq>_001.txt`` layout)
and must score them as ``grm-bench analyze`` does, per sequence and overall, to 4 decimals.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import shutil
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from grm.benchmarks import cli, metrics
from grm.benchmarks.textio import read_boxes, read_flags
from grm.runtime.demo import DEMO_MODEL
from grm.train.data.synth import SynthSpec, write_dataset

SPEC = SynthSpec(min_frames=12, max_frames=16, min_size=160, max_size=192)
SEED = 3  # its 4 sequences have boxes cut by the image border and frames without the target
LABEL = "grm"
REPORT = "got10k_val_pytracking.json"


def _run(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 0


def _analyze(data: Path, results: Path, out: Path) -> dict:
    argv = ["analyze", "--dataset", "got10k_val", "--results", str(results), "--data-root", str(data)]
    _run([*argv, "--out", str(out), "--no-plots"])
    return json.loads((out / REPORT).read_text())


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> tuple[Path, Path]:
    """(GOT-10k root holding val/, grm-bench results folder) for a generated val set."""
    if not DEMO_MODEL.is_file():
        pytest.skip("this build ships no demo model to produce results with")
    tmp = tmp_path_factory.mktemp("got10k")
    write_dataset(tmp / "data", 4, seed=SEED, subset="val", spec=SPEC)
    argv = ["--dataset", "got10k_val", "--engine", str(DEMO_MODEL), "--threads", "1", "--label", LABEL]
    _run([*argv, "--data-root", str(tmp / "data"), "--results-dir", str(tmp / "results"), "--no-plots"])
    return tmp / "data", tmp / "results" / LABEL / "got10k_val"


def _toolkit(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The toolkit's experiments module; skipped when the toolkit is not installed."""
    if importlib.util.find_spec("got10k") is None:
        pytest.skip("the GOT-10k toolkit is not installed (pip install got10k; it is in the dev extra)")
    if importlib.util.find_spec("six") is None:  # got10k 0.1.3 imports six without depending on it
        monkeypatch.setitem(sys.modules, "six", types.SimpleNamespace(string_types=(str,)))
    import matplotlib

    matplotlib.use("Agg")  # the toolkit plots its success curve
    import got10k.experiments

    return got10k.experiments


def _toolkit_layout(results: Path, root: Path) -> Path:
    """Copy grm-bench's files, unchanged, to the toolkit's ``GOT-10k/<tracker>/<seq>/`` layout under ``root``."""
    for path in results.glob("GOT-10k_Val_*.txt"):
        seq = path.stem.removesuffix("_time")
        name = path.name if path.stem.endswith("_time") else f"{seq}_001.txt"
        target = root / "GOT-10k" / LABEL / seq / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return root


def _close(ours: float | None, theirs: float) -> None:
    assert ours is not None and abs(ours - float(theirs)) < 5e-5, (ours, theirs)  # equal to 4 decimals


def test_toolkit_reads_generated_val_set(tracked, monkeypatch):
    data, _ = tracked
    _toolkit(monkeypatch)
    from got10k.datasets import GOT10k

    dataset = GOT10k(str(data), subset="val", return_meta=True)
    assert len(dataset) == 4
    for i, name in enumerate(dataset.seq_names):
        files, anno, meta = dataset[i]
        folder = data / "val" / name
        frame = cv2.imread(files[0])
        assert ast.literal_eval(meta["resolution"]) == (frame.shape[1], frame.shape[0])
        np.testing.assert_allclose(anno, read_boxes(folder / "groundtruth.txt"))
        for label in ("cover", "absence", "cut_by_image"):
            assert meta[label].tolist() == read_flags(folder / f"{label}.label").tolist()
    cut = np.concatenate([dataset[i][2]["cut_by_image"] for i in range(4)])
    cover = np.concatenate([dataset[i][2]["cover"] for i in range(4)])
    assert cut.any() and (cover == 0).any()  # clipping and absent frames both matter on this set


def test_toolkit_scores_equal_grm_bench_analyze(tracked, tmp_path, monkeypatch):
    data, results = tracked
    experiments = _toolkit(monkeypatch)
    report = _analyze(data, results, tmp_path / "ours")["trackers"][0]
    root = _toolkit_layout(results, tmp_path / "toolkit")
    experiment = experiments.ExperimentGOT10k(str(data), subset="val", result_dir=str(root), report_dir=str(tmp_path))
    theirs = experiment.report([LABEL])[LABEL]

    overall = theirs["overall"]
    _close(report["got10k"]["AO"], 100 * overall["ao"])
    _close(report["got10k"]["SR50"], 100 * overall["sr"])
    _close(report["got10k"]["SR75"], 100 * overall["succ_curve"][75])  # threshold linspace(0, 1, 101)[75] = 0.75
    _close(report["got10k"]["FPS"], overall["speed_fps"])
    assert set(theirs["seq_wise"]) == set(report["per_sequence"])
    for name, seq in theirs["seq_wise"].items():
        ours = report["per_sequence"][name]["got10k"]
        _close(ours["AO"], 100 * seq["ao"])
        _close(ours["SR50"], 100 * seq["sr"])
        _close(ours["FPS"], seq["speed_fps"])
        ious = _toolkit_ious(experiments, data, root, name)
        _close(ours["SR75"], 100 * experiment._evaluate(ious, np.ones(1))[3][75])


def _toolkit_ious(experiments: types.ModuleType, data: Path, root: Path, name: str) -> np.ndarray:
    """One sequence's IoUs as the toolkit's report computes them (its rect_iou, bound and cover filter)."""
    from got10k.datasets import GOT10k
    from got10k.utils.metrics import rect_iou

    _, anno, meta = GOT10k(str(data), subset="val", return_meta=True)[name]
    boxes = np.loadtxt(root / "GOT-10k" / LABEL / name / f"{name}_001.txt", delimiter=",")
    ious = rect_iou(boxes[1:], anno[1:], bound=ast.literal_eval(meta["resolution"]))
    return ious[meta["cover"][1:] > 0]


def test_scores_do_not_change_without_meta_info(tracked, tmp_path, caplog):
    data, results = tracked
    with_info = _analyze(data, results, tmp_path / "with")
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    removed = list(copy.glob("val/*/meta_info.ini"))
    for path in removed:
        path.unlink()
    assert len(removed) == 4
    with caplog.at_level(logging.WARNING):
        without = _analyze(copy, results, tmp_path / "without")
    assert without["trackers"] == with_info["trackers"]
    assert sum("first frame" in r.getMessage() for r in caplog.records) == 1  # said once, not per sequence

    # the resolution matters here: unclipped boxes would score differently
    gt = {p.parent.name: read_boxes(p) for p in data.glob("val/*/groundtruth.txt")}
    unclipped = [
        metrics.got10k_ious(read_boxes(results / f"{n}.txt"), g, read_flags(data / "val" / n / "cover.label"))
        for n, g in gt.items()
    ]
    assert abs(metrics.got10k_summary(unclipped)["AO"] - with_info["trackers"][0]["got10k"]["AO"]) > 1e-3
