"""Sequence discovery and crop collection: layouts, errors, deterministic plans, exact crops, cache hits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grm.calibration import collect
from grm.calibration.sequences import discover, read_box_file, split_holdout
from grm.runtime.atomic import sha256_file
from grm.runtime.backends import open_model
from grm.runtime.crop import normalize, sample_target
from grm.runtime.errors import InputError


def test_real_sequences_are_found_with_their_boxes(real_sequences: Path) -> None:
    seqs = discover([real_sequences])
    assert [s.name for s in seqs] == ["bag", "Couple", "Crossing", "MotorRolling"]
    counts = {s.name: (s.num_frames, len(s.boxes)) for s in seqs}
    assert counts == {"bag": (196, 196), "Couple": (140, 140), "Crossing": (120, 120), "MotorRolling": (164, 164)}
    bag = seqs[0]
    assert bag.box_file.name == "groundtruth_rect.txt"  # preferred over the polygon file
    np.testing.assert_allclose(bag.boxes[0], [292.23, 128.36, 145.96, 132.47])
    calib, held = split_holdout(seqs, None)
    assert [s.name for s in calib] == ["bag", "Crossing"] and [s.name for s in held] == ["Couple", "MotorRolling"]


def test_polygon_rows_become_enclosing_boxes(tmp_path: Path) -> None:
    path = tmp_path / "groundtruth.txt"
    path.write_text("334.02,128.36,438.19,188.78,396.39,260.83,292.23,200.41\n\n1\t2\t3\t4\n")
    np.testing.assert_allclose(read_box_file(path), [[292.23, 128.36, 145.96, 132.47], [1, 2, 3, 4]], atol=1e-9)


def test_layout_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no sequences in"):
        discover([tmp_path / "empty"])
    with pytest.raises(InputError, match="does not exist"):
        discover([tmp_path / "missing"])
    seq = tmp_path / "seq"
    seq.mkdir()
    (seq / "groundtruth.txt").write_text("1,2,3\n")
    (seq / "0001.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="expected 4 values"):
        discover([seq])


def test_holdout_names_are_checked(synth_root: Path) -> None:
    seqs = discover([synth_root])
    with pytest.raises(InputError, match="--holdout nope not among"):
        split_holdout(seqs, ["nope"])
    with pytest.raises(InputError, match="every sequence is held out"):
        split_holdout(seqs, ["synthA", "synthB"])


def test_unreadable_frame_is_a_clear_error(synth_root: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(synth_root / "synthA", broken)
    (broken / "img" / "0003.png").write_bytes(b"not an image")
    seq = discover([broken])[0]
    with pytest.raises(InputError, match=r"frame 2 .* cannot be decoded"):
        list(seq.frames())


def test_frame_plan_is_spread_and_deterministic(real_sequences: Path) -> None:
    calib, _ = split_holdout(discover([real_sequences]), None)  # bag (196 frames), Crossing (120)
    plan = collect.plan_frames(calib, samples=5, max_frames=30)
    assert plan == {"bag": [1, 15, 29], "Crossing": [1, 29]}
    assert collect.plan_frames(calib, samples=5, max_frames=30) == plan
    # more samples than usable frames: every frame once, nothing repeated
    small = collect.plan_frames(calib, samples=100, max_frames=4)
    assert small == {"bag": [1, 2, 3], "Crossing": [1, 2, 3]}
    with pytest.raises(InputError, match="--samples"):
        collect.plan_frames(calib, samples=0)


def test_collected_crops_are_what_the_tracker_feeds(tiny_onnx: Path, synth_root: Path, calib_set) -> None:
    seq = [s for s in discover([synth_root]) if s.name == "synthA"][0]
    params = open_model(tiny_onnx, backend="onnxruntime").metadata.tracker
    frame0 = next(seq.frames())[1]
    crop = sample_target(frame0, seq.boxes[0], params.template_factor, params.template_size)
    np.testing.assert_array_equal(calib_set.templates[0], normalize(crop.image, params.mean, params.std)[0])
    frames = calib_set.manifest["sources"][0]["frames"]
    assert len(calib_set) == 16 and frames == sorted(set(frames)) and frames[0] == 1 and frames[-1] == 19
    assert calib_set.search.shape == (16, 3, params.search_size, params.search_size)
    assert calib_set.search.dtype == np.float32 and np.all(calib_set.template_index == 0)
    # the first search crop is cut around the initial box (the tracker's state before frame 1)
    frame1 = list(seq.frames(limit=2))[1][1]
    first = sample_target(frame1, seq.boxes[0], params.search_factor, params.search_size)
    np.testing.assert_array_equal(calib_set.search[0], normalize(first.image, params.mean, params.std)[0])


def test_collection_is_deterministic_and_cached(tiny_onnx: Path, synth_root: Path, tmp_path: Path, calib_set) -> None:
    backend = open_model(tiny_onnx, backend="onnxruntime", threads=1)
    seqs = [s for s in discover([synth_root]) if s.name == "synthA"]
    sha = sha256_file(tiny_onnx)
    kwargs = {"samples": 16, "threshold": 0.0, "model_sha256": sha, "cache_dir": tmp_path}
    again, hit = collect.load_or_collect(backend, seqs, **kwargs)
    assert not hit and again.hash == calib_set.hash
    np.testing.assert_array_equal(again.search, calib_set.search)
    cached, hit = collect.load_or_collect(backend, seqs, **kwargs)
    assert hit and np.array_equal(cached.search, again.search) and cached.manifest == again.manifest
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".npz"]
    other, hit = collect.load_or_collect(backend, seqs, **{**kwargs, "threshold": 0.4})
    assert not hit and other.hash != again.hash and other.threshold == pytest.approx(0.4)
