from __future__ import annotations

import numpy as np

from grm.train.data.got10k import Got10k
from grm.train.data.synth import SynthSpec, cover_bins, generate_sequence, write_dataset

SPEC = SynthSpec(min_frames=24, max_frames=30, min_size=160, max_size=200)


def test_same_seed_same_sequence_and_different_seed_differs():
    a, b = generate_sequence(5, 1, SPEC), generate_sequence(5, 1, SPEC)
    c = generate_sequence(6, 1, SPEC)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.frames[7], b.frames[7])
    assert not np.array_equal(a.boxes[: len(c.boxes)], c.boxes[: len(a.boxes)])


def test_target_moves_and_scales():
    seq = generate_sequence(0, 2, SPEC)
    centres = seq.boxes[:, :2] + seq.boxes[:, 2:] / 2
    assert np.linalg.norm(centres[-1] - centres[0]) > 1.0
    area = seq.boxes[:, 2] * seq.boxes[:, 3]
    assert area.max() / area.min() > 1.02


def test_cover_bins_follow_got10k_levels():
    v = np.array([0.0, 0.1, 0.15, 0.2, 0.5, 0.89, 0.95, 1.0])
    assert cover_bins(v).tolist() == [0, 1, 1, 2, 4, 6, 7, 8]


def test_some_sequences_have_occlusion_or_absence():
    fractions = np.concatenate([generate_sequence(1, i, SPEC).visible_fraction for i in range(12)])
    assert (fractions < 1.0).any() and (fractions == 1.0).any()


def test_written_layout_reads_back(tmp_path):
    root = write_dataset(tmp_path, 2, seed=9, spec=SPEC)
    assert (root / "list.txt").read_text().split() == ["GOT-10k_Train_000001", "GOT-10k_Train_000002"]
    ds = Got10k(tmp_path)  # the parent folder is accepted too
    seq = generate_sequence(9, 1, SPEC)
    info = ds.sequence_info(1)
    np.testing.assert_allclose(info.boxes, seq.boxes, atol=1e-4)
    assert np.array_equal(info.visible, (seq.absence == 0) & (seq.cover > 0))
    frame = ds.frame(1, 0)
    assert frame.shape == seq.frames[0].shape
    assert np.abs(frame.astype(int) - seq.frames[0].astype(int)).mean() < 4  # JPEG round trip of an RGB frame
    assert (root / "GOT-10k_Train_000002" / f"{len(seq.frames):08d}.jpg").is_file()


def test_val_layout_is_complete_for_the_got10k_toolkit(tmp_path):
    root = write_dataset(tmp_path, 3, seed=1, subset="val", spec=SPEC)
    assert (root / "list.txt").read_text().split()[0] == "GOT-10k_Val_000001"
    cut_any = False
    for i in range(3):
        seq = generate_sequence(1, i, SPEC)
        folder = root / f"GOT-10k_Val_{i + 1:06d}"
        meta = (folder / "meta_info.ini").read_text().splitlines()
        assert meta[0] == "[METAINFO]"
        fields = dict(line.split(": ") for line in meta[1:])  # how the toolkit parses it
        height, width = seq.frames[0].shape[:2]
        assert fields["resolution"] == f"({width}, {height})"
        cut = np.loadtxt(folder / "cut_by_image.label")
        b = seq.boxes
        outside = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 0] + b[:, 2] > width) | (b[:, 1] + b[:, 3] > height)
        assert cut.tolist() == outside.astype(float).tolist()
        cut_any |= bool(cut.any())
        for label in ("absence", "cover"):
            assert len(np.loadtxt(folder / f"{label}.label")) == len(seq.frames)
    assert cut_any


def test_an_interrupted_sequence_is_written_again(tmp_path):
    root = write_dataset(tmp_path, 1, seed=2, subset="val", spec=SPEC)
    folder = root / "GOT-10k_Val_000001"
    (folder / "meta_info.ini").unlink()  # killed before its last file
    (folder / "cover.label").write_text("garbage\n")
    write_dataset(tmp_path, 1, seed=2, subset="val", spec=SPEC)
    assert (folder / "meta_info.ini").is_file()
    assert np.loadtxt(folder / "cover.label").tolist() == generate_sequence(2, 0, SPEC).cover.tolist()
