"""Analysis of result folders on generated dataset trees (no image folders), with hand-computed scores."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from grm.benchmarks.analysis import analyze
from grm.benchmarks.datasets import open_dataset
from grm.benchmarks.report import to_json, to_markdown
from grm.benchmarks.results import result_sets
from grm.runtime.errors import InputError

from .bench_fakes import still_boxes, write_boxes

FAR = (300.0, 300.0, 20.0, 20.0)


def test_uav_nan_rows_toolkit_names_and_truncated_results(tmp_path):
    gt = still_boxes(133)
    gt[10:20] = np.nan
    write_boxes(tmp_path / "data" / "anno" / "UAV123" / "uav2.txt", gt)
    pred = still_boxes(133, (30.9, 20.7, 20.2, 20.9))  # truncates to the ground truth
    pred[50:60] = FAR
    pred[70] = (1, 1, 0, 0)  # zero size: takes frame 69's box
    write_boxes(tmp_path / "res" / "uav2.txt", np.trunc(pred), sep="\t")  # toolkit name, ints, tabs
    ds = open_dataset("uav", tmp_path / "data", partial=True)
    sets = result_sets([f"t={tmp_path / 'res'}"])
    py = analyze(ds, sets, "pytracking").trackers[0]
    c = py.per_sequence["uav_uav2"]
    assert c.success[0] == pytest.approx(113 / 123)  # 123 valid frames, 10 of them lost
    assert c.precision[20] == pytest.approx(1.0)  # the 10 NaN frames count as hits in the numerator
    otb = analyze(ds, sets, "otb").trackers[0].per_sequence["uav_uav2"]
    assert otb.success[0] == pytest.approx(113 / 133) and otb.precision[20] == pytest.approx(123 / 133)


def _lasot(root, n=20):
    folder = root / "airplane" / "airplane-1"
    write_boxes(folder / "groundtruth.txt", still_boxes(n))
    (folder / "full_occlusion.txt").write_text(",".join("1" if 5 <= i <= 7 else "0" for i in range(n)))
    (folder / "out_of_view.txt").write_text(",".join("0" for _ in range(n)))


def test_lasot_invisible_frames_and_strict_length(tmp_path):
    _lasot(tmp_path / "data")
    pred = still_boxes(21)  # one row too many: cut
    pred[10:12] = FAR
    write_boxes(tmp_path / "res" / "airplane-1.txt", pred)
    ds = open_dataset("lasot", tmp_path / "data", partial=True)
    c = analyze(ds, result_sets([str(tmp_path / "res")])).trackers[0].per_sequence["airplane-1"]
    assert c.success[0] == pytest.approx(15 / 17)
    assert c.precision[20] == pytest.approx(15 / 17) and c.norm_precision[20] == pytest.approx(15 / 17)
    write_boxes(tmp_path / "res" / "airplane-1.txt", pred[:19])
    with pytest.raises(InputError, match="19 result rows for 20"):
        analyze(ds, result_sets([str(tmp_path / "res")]))


def test_avist_divides_by_all_frames(tmp_path):
    root = tmp_path / "data"
    write_boxes(root / "anno" / "air_show.txt", still_boxes(10), sep=" ")
    (root / "full_occlusion").mkdir()
    (root / "out_of_view").mkdir()
    (root / "full_occlusion" / "air_show_full_occlusion.txt").write_text("0,0,0,0,0,0,0,0,1,1")
    (root / "out_of_view" / "air_show_out_of_view.txt").write_text("0,0,0,0,0,0,0,0,0,0")
    write_boxes(tmp_path / "res" / "air_show.txt", still_boxes(10))
    report = analyze(open_dataset("avist", root, partial=True), result_sets([str(tmp_path / "res")]))
    assert report.trackers[0].per_sequence["air_show"].success[0] == pytest.approx(0.8)


def test_got10k_val_reports_ao_and_sr(tmp_path):
    val = tmp_path / "val"
    for i, seq in enumerate(("GOT-10k_Val_000001", "GOT-10k_Val_000002")):
        write_boxes(val / seq / "groundtruth.txt", still_boxes(4 + i, (10, 10, 20, 10)))
        (val / seq / "cover.label").write_text("\n".join(["8"] * (4 + i)))
        (val / seq / "meta_info.ini").write_text("[METAINFO]\nresolution: (640, 480)\n")
    (val / "list.txt").write_text("GOT-10k_Val_000001\nGOT-10k_Val_000002\n")
    write_boxes(tmp_path / "res" / "GOT-10k_Val_000001.txt", still_boxes(4, (10, 10, 20, 10)))
    write_boxes(tmp_path / "res" / "GOT-10k_Val_000002.txt", still_boxes(5, (20, 10, 20, 10)))  # IoU 1/3
    report = analyze(open_dataset("got10k_val", tmp_path), result_sets([str(tmp_path / "res")]))
    got = report.trackers[0].got10k
    assert got["AO"] == pytest.approx(100 * (3 * 1 + 4 / 3) / 7)  # 3 + 4 frames pooled (frame 0 excluded)
    assert got["SR50"] == pytest.approx(100 * 3 / 7) and got["SR75"] == pytest.approx(100 * 3 / 7)


def test_got10k_val_report_per_sequence_matches_overall_rules_and_units(tmp_path):
    val = tmp_path / "val"
    names = ("GOT-10k_Val_000001", "GOT-10k_Val_000002")
    for seq in names:
        write_boxes(val / seq / "groundtruth.txt", still_boxes(4, (10, 10, 20, 10)))
        (val / seq / "cover.label").write_text("8\n8\n8\n0\n")
        (val / seq / "meta_info.ini").write_text("[METAINFO]\nresolution: (28, 480)\n")
    (val / "list.txt").write_text("\n".join(names) + "\n")
    # sequence 1 perfect; sequence 2 shifted 10 px right, both boxes clipped to the 28-px width: IoU 8 / 18
    # (1 / 3 unclipped)
    write_boxes(tmp_path / "res" / f"{names[0]}.txt", still_boxes(4, (10, 10, 20, 10)))
    write_boxes(tmp_path / "res" / f"{names[1]}.txt", still_boxes(4, (20, 10, 20, 10)))
    (tmp_path / "res" / f"{names[0]}_time.txt").write_text("0.5\n0.1\n0.1\n0.2\n")
    (tmp_path / "res" / f"{names[1]}_time.txt").write_text("0.5\n0.1\n0.1\n0.2\n")
    report = analyze(open_dataset("got10k_val", tmp_path), result_sets([str(tmp_path / "res")]))
    out = to_json(report)
    tracker = out["trackers"][0]
    first, second = (tracker["per_sequence"][n] for n in names)
    assert first["got10k"] == pytest.approx({"AO": 100.0, "SR50": 100.0, "SR75": 100.0, "FPS": (2 + 10 + 10 + 5) / 4})
    assert second["got10k"]["AO"] == pytest.approx(100 * 4 / 9) and second["got10k"]["SR50"] == 0.0
    assert tracker["got10k"]["AO"] == pytest.approx((100 * 2 + 100 * 4 / 9 * 2) / 4)  # frame 3 absent in both
    assert "AO" not in first  # no number under other rules or units beside the GOT-10k ones
    assert first["FPS"] == pytest.approx(3 / 0.4) and tracker["fps"] == pytest.approx(6 / 0.8)
    assert tracker["got10k"]["FPS"] == pytest.approx((2 + 10 + 10 + 5) / 4)
    assert set(out["definitions"]) == {"protocol", "FPS", "got10k", "got10k.FPS"}
    assert out["definitions"]["got10k.FPS"].startswith("GOT-10k toolkit: mean of 1 / per-frame seconds")
    text = to_markdown(report)
    assert "| res AO | res SR50 | res SR75 |" in text and "| FPS | FPS GOT-10k |" in text
    assert "| GOT-10k_Val_000002 | " in text and "| 44.4 | 0.0 | 0.0 |" in text
    assert "FPS = frames after the first" in text and "FPS GOT-10k = GOT-10k toolkit" in text


def test_missing_results_and_test_sets(tmp_path):
    root = tmp_path / "data"
    for seq in ("Deer", "Skiing"):
        write_boxes(root / seq / "groundtruth_rect.txt", still_boxes(5))
    write_boxes(tmp_path / "a" / "Deer.txt", still_boxes(5))
    write_boxes(tmp_path / "a" / "Skiing.txt", still_boxes(5))
    write_boxes(tmp_path / "b" / "deer.txt", still_boxes(5))
    ds = open_dataset("otb", root, partial=True)
    sets = result_sets([str(tmp_path / "a"), str(tmp_path / "b")])
    with pytest.raises(InputError, match="'b' lack 1 of 2 sequences"):
        analyze(ds, sets)
    report = analyze(ds, sets, skip_missing=True)
    assert report.sequences == ["Deer"] and report.missing == {"b": ["Skiing"]}
    write_boxes(tmp_path / "t" / "test" / "s" / "groundtruth.txt", still_boxes(1))
    (tmp_path / "t" / "test" / "list.txt").write_text("s\n")
    with pytest.raises(InputError, match="grm-bench pack"):
        analyze(open_dataset("got10k_test", tmp_path / "t"), sets)


def test_no_torch_and_no_matplotlib_at_import():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import grm.benchmarks.cli, grm.benchmarks.run, grm.benchmarks.speed, grm.benchmarks.plots\n"
        "assert sys.modules.get('torch') is None and 'matplotlib' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
