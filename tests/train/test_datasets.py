from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from grm.runtime.errors import DatasetError
from grm.train.data.coco import Coco
from grm.train.data.got10k import Got10k
from grm.train.data.lasot import Lasot
from grm.train.data.sources import DatasetRoots, build_datasets
from grm.train.data.splits import read_index_split, read_name_split
from grm.train.data.trackingnet import TrackingNet, subsampled_visible


def _jpg(path: Path, value: int = 100, size: tuple[int, int] = (40, 60)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((*size, 3), value, np.uint8)
    img[..., 0] = 200  # distinguish RGB from BGR
    cv2.imwrite(str(path), img)


def test_packaged_lasot_split_has_16_videos_per_class():
    names = read_name_split("lasot_train_split.txt")
    assert len(names) == 1120 and len(set(names)) == 1120
    classes = {n.rsplit("-", 1)[0] for n in names}
    assert len(classes) == 70
    assert names[:3] == ("airplane-10", "airplane-11", "airplane-12")
    assert "airplane-1" not in names and "car-2" not in names  # both in the 280-video test list


def test_lasot_visibility_and_frames(tmp_path):
    seq = tmp_path / "cat" / "cat-2"
    seq.mkdir(parents=True)
    (seq / "groundtruth.txt").write_text("1,2,10,10\n1,2,10,10\n1,2,0,10\n1,2,10,10\n")
    (seq / "full_occlusion.txt").write_text("0,1,0,0")
    (seq / "out_of_view.txt").write_text("0,0,0,1")
    _jpg(seq / "img" / "00000002.jpg")
    ds = Lasot(tmp_path, sequences=["cat-2"])
    assert ds.sequence_info(0).visible.tolist() == [True, False, False, False]
    frame = ds.frame(0, 1)  # frame id 1 -> 00000002.jpg
    assert frame.shape == (40, 60, 3) and frame[0, 0, 2] > 150  # converted to RGB


def test_lasot_missing_training_sequences_is_one_error(tmp_path):
    with pytest.raises(DatasetError, match="lacks 1120 of 1120"):
        Lasot(tmp_path)


def test_trackingnet_uses_every_30th_frame_plus_last(tmp_path):
    assert np.flatnonzero(subsampled_visible(65)).tolist() == [0, 30, 60, 64]
    anno = tmp_path / "TRAIN_0" / "anno"
    anno.mkdir(parents=True)
    rows = ["5,5,10,10"] * 65
    rows[30] = "5,5,0,0"
    (anno / "vid_a.txt").write_text("\n".join(rows) + "\n")
    _jpg(tmp_path / "TRAIN_0" / "frames" / "vid_a" / "30.jpg", value=50)
    ds = TrackingNet(tmp_path, chunks=(0,))
    assert np.flatnonzero(ds.sequence_info(0).visible).tolist() == [0, 60, 64]
    assert ds.frame(0, 30).shape == (40, 60, 3)
    with pytest.raises(DatasetError, match="TRAIN_1"):
        TrackingNet(tmp_path)


def test_coco_annotations_are_one_frame_sequences(tmp_path):
    (tmp_path / "annotations").mkdir()
    data = {
        "images": [{"id": 7, "file_name": "a.jpg"}, {"id": 9, "file_name": "b.jpg"}],
        "annotations": [
            {"image_id": 9, "bbox": [1, 2, 60, 55], "iscrowd": 0},
            {"image_id": 7, "bbox": [0, 0, 5, 5], "iscrowd": 1},
            {"image_id": 7, "bbox": [3, 4, 20, 30], "iscrowd": 0},
        ],
    }
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    _jpg(tmp_path / "images" / "train2017" / "b.jpg")
    ds = Coco(tmp_path)
    assert len(ds) == 2 and not ds.is_video
    info = ds.sequence_info(0)
    assert info.boxes.tolist() == [[1, 2, 60, 55]] and info.visible.tolist() == [True]
    assert ds.sequence_info(1).visible.tolist() == [False]  # w, h <= 50: flagged (the sampler ignores it)
    assert ds.frame(0, 0).shape == (40, 60, 3)


def test_coco_malformed_json_is_dataset_error(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2017.json").write_text('{"images": []')
    with pytest.raises(DatasetError, match="not a COCO instances file"):
        Coco(tmp_path)


def test_got10k_malformed_annotation_and_short_list(synth_root, tmp_path):
    ds = Got10k(synth_root)
    assert ds.name == "GOT10K_train" and len(ds) == 4
    with pytest.raises(DatasetError, match="vot_train split indexes up to"):
        Got10k(synth_root, split="vot_train")
    bad = tmp_path / "train"
    (bad / "s1").mkdir(parents=True)
    (bad / "list.txt").write_text("s1\n")
    (bad / "s1" / "groundtruth.txt").write_text("1,2,3\n")
    with pytest.raises(DatasetError, match="expected 4 values"):
        Got10k(tmp_path).sequence_info(0)
    with pytest.raises(DatasetError, match="does not exist"):
        Got10k(tmp_path).frame(0, 0)


def test_vot_train_split_indices_are_unique_and_in_range():
    try:
        indices = read_index_split("got10k_vot_train_split.txt")
    except DatasetError:
        pytest.skip("vot_train split list not packaged")
    assert len(indices) == len(set(indices)) == 7086
    assert 0 <= min(indices) and max(indices) < 9335


def test_roots_resolution_order(tmp_path):
    roots = DatasetRoots(data_root=tmp_path, explicit={"lasot": tmp_path / "x"})
    assert roots.resolve("lasot", {}) == tmp_path / "x"
    assert roots.resolve("got10k", {"GRM_GOT10K_DIR": "/env/got"}) == Path("/env/got")
    assert roots.resolve("coco", {}) == tmp_path / "coco"
    with pytest.raises(DatasetError, match="GRM_COCO_DIR"):
        DatasetRoots().resolve("coco", {})


def test_build_datasets_by_official_name(synth_root):
    (ds,) = build_datasets(["GOT10K_train"], DatasetRoots(explicit={"got10k": synth_root.parent}), environ={})
    assert isinstance(ds, Got10k)
    with pytest.raises(DatasetError, match="unknown training dataset"):
        build_datasets(["IMAGENET"], DatasetRoots(), environ={})


def test_data_pipeline_imports_without_torch():
    import subprocess
    import sys

    code = (
        "import sys, grm.train.data.sampler, grm.train.data.synth, grm.train.data.sources; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_coco_samples_use_one_image_for_template_and_search(tmp_path):
    from grm.train.config import get_config
    from grm.train.data.processing import Processing
    from grm.train.data.sampler import PairSampler

    (tmp_path / "annotations").mkdir()
    data = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [{"image_id": 1, "bbox": [40, 30, 20, 20], "iscrowd": 0}],
    }  # small: flag False, still used
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    (tmp_path / "images" / "train2017").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "train2017" / "a.jpg"), img)
    sampler = PairSampler([Coco(tmp_path)], [1.0], Processing.from_config(get_config("tiny")), samples_per_epoch=3)
    for i in range(3):
        sample = sampler[i]
        assert sample["search"].shape == (3, 128, 128) and int(sample["skipped"]) == 0
        # the template is never jittered: its box is centred in the 64-px crop (possibly mirrored)
        cx = sample["template_anno"][0] + sample["template_anno"][2] / 2
        assert min(abs(cx - 31.5 / 64), abs(cx - 32.5 / 64)) < 1e-5
