"""Every loader reads a small tree written in its dataset's official layout, quirks included."""

from __future__ import annotations

import numpy as np
import pytest

from grm.benchmarks.datasets import DATASETS, env_var_for, open_dataset
from grm.benchmarks.naming import name_key
from grm.benchmarks.tables import attribute_names, name_list, nfs_table, otb_table, uav_table
from grm.runtime.errors import DatasetError

from .bench_fakes import IMAGE_WH, still_boxes, write_boxes, write_frames


def test_tables_have_the_official_sizes_and_unique_names():
    assert len(uav_table("uav123.txt")) == 123 and len(uav_table("uav20l.txt")) == 20
    assert len(name_list("lasot.txt")) == 280 and len(name_list("lasot_ext.txt")) == 150
    assert len(name_list("avist.txt")) == 120 and len(nfs_table()) == 100 and len(otb_table()) == 100
    for names in (
        [e.name for e in uav_table("uav123.txt")],
        list(name_list("lasot.txt")),
        [e.name for e in otb_table()],
        [e.name for e in nfs_table()],
    ):
        assert len({name_key(n) for n in names}) == len(names)
    bird = {e.name: e for e in uav_table("uav123.txt")}
    assert (bird["bird1_2"].start, bird["bird1_2"].end) == (775, 1477)
    assert bird["car1_2"].start == bird["car1_1"].end == 751  # ranges may overlap
    otb = {e.name: e for e in otb_table()}
    assert [otb[n].start for n in ("BlurCar1", "BlurCar3", "BlurCar4", "David")] == [247, 3, 18, 300]
    assert otb["Board"].digits == 5 and otb["Tiger1"].omit == 5 and otb["KiteSurf"].ext == "png"
    assert len(attribute_names("uav")["short"]) == 12 and len(attribute_names("lasot")["short"]) == 14


def test_missing_root_and_unknown_dataset_give_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("GRM_UAV_ROOT", raising=False)
    with pytest.raises(DatasetError, match="GRM_UAV_ROOT") as e:
        open_dataset("uav")
    assert "\n" not in str(e.value)
    with pytest.raises(DatasetError, match="anno/UAV123"):
        open_dataset("uav", tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset"):
        open_dataset("vot", tmp_path)
    assert env_var_for("got10k_val") == "GRM_GOT10K_VAL_ROOT"


def test_root_from_environment_variable(tmp_path, monkeypatch):
    write_boxes(tmp_path / "anno" / "UAV123" / "uav2.txt", still_boxes(133))
    monkeypatch.setenv("GRM_UAV_ROOT", str(tmp_path))
    assert open_dataset("uav", partial=True).sequence_names() == ["uav_uav2"]


def test_uav123_ranges_nan_rows_and_attributes(tmp_path):
    gt = still_boxes(703)
    gt[10:20] = np.nan
    write_boxes(tmp_path / "anno" / "UAV123" / "bird1_2.txt", gt)
    write_boxes(tmp_path / "anno" / "UAV123" / "uav2.txt", still_boxes(133))
    ds = open_dataset("uav", tmp_path, partial=True)
    assert ds.sequence_names() == ["uav_bird1_2", "uav_uav2"]
    seq = ds.load("uav_bird1_2")
    assert seq.tag == "uav" and len(seq) == len(seq.frames) == 703
    assert seq.frames[0] == tmp_path / "data_seq" / "UAV123" / "bird1" / "000775.jpg"
    assert seq.frames[-1].name == "001477.jpg" and np.isnan(seq.gt[10]).all()
    assert seq.aliases == ("bird1_2",)
    assert ds.attribute_table() is None  # no att/ files in this tree
    for name in ("bird1_2", "uav2"):
        (tmp_path / "anno" / "UAV123" / "att").mkdir(exist_ok=True)
        (tmp_path / "anno" / "UAV123" / "att" / f"{name}.txt").write_text("1,0,0,1,0,0,0,0,0,0,0,1")
    names, flags = ds.attribute_table()
    assert names[0] == "SV" and flags["uav_uav2"][[0, 3, 11]].all()
    with pytest.raises(DatasetError, match="annotation of uav_bike1 not found"):
        open_dataset("uav", tmp_path).sequences()


def test_uav20l_whole_videos(tmp_path):
    write_boxes(tmp_path / "anno" / "UAV20L" / "uav1.txt", still_boxes(3469))
    seq = open_dataset("uav20l", tmp_path, partial=True).load("uav_uav1")
    assert len(seq.frames) == 3469 and seq.frames[0].parent.name == "uav1" and seq.tag == "uav"


def _lasot_video(root, cls, name, n, occluded=(), out=()):
    folder = root / cls / name
    write_boxes(folder / "groundtruth.txt", still_boxes(n))
    occ = ["1" if i in occluded else "0" for i in range(n)]
    oov = ["1" if i in out else "0" for i in range(n)]
    (folder / "full_occlusion.txt").write_text(",".join(occ))
    (folder / "out_of_view.txt").write_text(",".join(oov))
    return folder


@pytest.mark.parametrize("dataset, cls, name", [("lasot", "airplane", "airplane-1"), ("lasot_ext", "atv", "atv-1")])
def test_lasot_visibility_and_frames(tmp_path, dataset, cls, name):
    _lasot_video(tmp_path, cls, name, 12, occluded={3}, out={5, 6})
    ds = open_dataset(dataset, tmp_path, partial=True)
    seq = ds.load(name)
    assert seq.visible.tolist() == [i not in (3, 5, 6) for i in range(12)]
    assert seq.frames[0] == tmp_path / cls / name / "img" / "00000001.jpg" and len(seq.frames) == 12
    assert seq.tag == ("lasot" if dataset == "lasot" else "lasot_extension_subset")
    (tmp_path / cls / name / "out_of_view.txt").write_text("0,0")
    with pytest.raises(DatasetError, match="2 out-of-view flags for 12"):
        ds.load(name)


def test_lasot_attributes_from_toolkit_folder(tmp_path):
    _lasot_video(tmp_path, "airplane", "airplane-1", 4)
    (tmp_path / "att").mkdir()
    (tmp_path / "att" / "airplane-1.txt").write_text(",".join(["0"] * 13 + ["1"]))
    names, flags = open_dataset("lasot", tmp_path, partial=True).attribute_table()
    assert names[-1] == "ARC" and flags["airplane-1"][-1]


def test_nfs_tab_separated_and_prefixed(tmp_path):
    write_boxes(tmp_path / "anno" / "nfs_bee.txt", still_boxes(45), sep="\t")
    seq = open_dataset("nfs", tmp_path, partial=True).load("nfs_bee")
    assert seq.frames[0] == tmp_path / "sequences" / "bee" / "00001.jpg" and len(seq.frames) == 45
    assert seq.gt.shape == (45, 4) and seq.aliases == ("bee",)


def test_avist_space_separated_with_flags(tmp_path):
    write_boxes(tmp_path / "anno" / "air_show.txt", still_boxes(6), sep=" ")
    (tmp_path / "full_occlusion").mkdir()
    (tmp_path / "out_of_view").mkdir()
    (tmp_path / "full_occlusion" / "air_show_full_occlusion.txt").write_text("0,0,1,0,0,0")
    (tmp_path / "out_of_view" / "air_show_out_of_view.txt").write_text("0,0,0,0,0,1")
    ds = open_dataset("avist", tmp_path, partial=True)
    seq = ds.load("air_show")
    assert seq.visible.tolist() == [True, True, False, True, True, False]
    assert seq.frames[0] == tmp_path / "sequences" / "air_show" / "img_00001.jpg"
    with pytest.raises(DatasetError, match="not one of the 120"):
        ds.load("nope")


def test_got10k_test_and_val(tmp_path):
    for i, seq in enumerate(["GOT-10k_Test_000001", "GOT-10k_Test_000002"]):
        write_boxes(tmp_path / "test" / seq / "groundtruth.txt", still_boxes(1))
        write_frames(tmp_path / "test" / seq / f"{k:08d}.jpg" for k in range(1, 4 + i))
    (tmp_path / "test" / "list.txt").write_text("GOT-10k_Test_000001\nGOT-10k_Test_000002\n")
    ds = open_dataset("got10k_test", tmp_path)
    assert not ds.has_ground_truth and ds.sequence_names() == ["GOT-10k_Test_000001", "GOT-10k_Test_000002"]
    seq = ds.load("GOT-10k_Test_000002")
    assert len(seq.gt) == 1 and [p.name for p in seq.frames][:2] == ["00000001.jpg", "00000002.jpg"]
    assert len(seq.frames) == 4 and seq.tag == "got10k"

    val = tmp_path / "val" / "GOT-10k_Val_000001"
    write_boxes(val / "groundtruth.txt", still_boxes(5))
    (val / "cover.label").write_text("8\n8\n0\n4\n8\n")
    (val / "meta_info.ini").write_text("[METAINFO]\nurl: x\nresolution: (1280, 720)\n")
    (tmp_path / "val" / "list.txt").write_text("GOT-10k_Val_000001\n")
    seq = open_dataset("got10k_val", tmp_path / "val").load("GOT-10k_Val_000001")  # split folder as root
    assert seq.cover.tolist() == [8, 8, 0, 4, 8] and seq.resolution == (1280, 720) and seq.frames == ()
    with pytest.raises(DatasetError, match="val/list.txt"):
        open_dataset("got10k_val", tmp_path / "test")


def test_got10k_val_without_meta_info_reads_the_size_of_the_first_frame(tmp_path, caplog):
    val = tmp_path / "val"
    for seq in ("a", "b"):
        write_boxes(val / seq / "groundtruth.txt", still_boxes(2))
        write_frames(val / seq / f"{k:08d}.jpg" for k in (1, 2))
    (val / "b" / "meta_info.ini").write_text("[METAINFO]\nurl: x\n")  # no resolution line
    (val / "list.txt").write_text("a\nb\n")
    ds = open_dataset("got10k_val", tmp_path)
    with caplog.at_level("WARNING"):
        assert [s.resolution for s in ds.sequences()] == [IMAGE_WH, IMAGE_WH]
    assert len(caplog.records) == 1 and "first frame" in caplog.records[0].getMessage()
    for k in (1, 2):
        (val / "a" / f"{k:08d}.jpg").unlink()
    with pytest.raises(DatasetError, match=r"a/meta_info.ini .* is missing .* no frames"):
        ds.load("a")


def test_trackingnet_frames_sorted_by_number(tmp_path):
    write_boxes(tmp_path / "TEST" / "anno" / "abc_1.txt", still_boxes(1))
    write_frames(tmp_path / "TEST" / "frames" / "abc_1" / f"{k}.jpg" for k in range(11))
    ds = open_dataset("trackingnet", tmp_path)
    seq = ds.load("abc_1")
    assert [p.stem for p in seq.frames] == [str(k) for k in range(11)]  # 10 after 9, not after 1
    assert ds.sequence_names() == ["abc_1"] and not ds.has_ground_truth


def test_otb_dataset_layout_quirks(tmp_path):
    write_boxes(tmp_path / "Jogging" / "groundtruth_rect.1.txt", still_boxes(307))
    write_boxes(tmp_path / "Jogging" / "groundtruth_rect.2.txt", still_boxes(307, (5, 5, 10, 30)), sep="\t")
    write_boxes(tmp_path / "David" / "groundtruth_rect.txt", still_boxes(471))
    tiger = still_boxes(354)
    tiger[:5] = (1, 1, 1, 1)
    write_boxes(tmp_path / "Tiger1" / "groundtruth_rect.txt", tiger)
    write_boxes(tmp_path / "Board" / "groundtruth_rect.txt", still_boxes(698))
    write_boxes(tmp_path / "human4" / "groundtruth_rect.2.txt", still_boxes(667))  # folder case differs
    ds = open_dataset("otb", tmp_path, partial=True)
    assert ds.sequence_names() == ["Board", "David", "Human4_2", "Jogging_1", "Jogging_2", "Tiger1"]
    jog2 = ds.load("Jogging_2")
    assert jog2.gt[0].tolist() == [5, 5, 10, 30] and jog2.frames[0] == tmp_path / "Jogging" / "img" / "0001.jpg"
    david = ds.load("David")
    assert david.frames[0].name == "0300.jpg" and david.frames[-1].name == "0770.jpg" and david.leading_frames == 299
    t1 = ds.load("Tiger1")
    assert len(t1) == 349 and t1.frames[0].name == "0006.jpg" and t1.gt[0].tolist() == list(still_boxes(1)[0])
    assert ds.load("Board").frames[0].name == "00001.jpg"
    human = ds.load("Human4_2")
    assert human.frames[0] == tmp_path / "human4" / "img" / "0001.jpg" and human.aliases == ("Human4",)
    with pytest.raises(DatasetError, match="annotation of Basketball not found"):
        open_dataset("otb", tmp_path).sequences()


def test_otb_toolkit_flat_annotations(tmp_path):
    for name, n in (("jogging-1", 307), ("Human4.2", 667), ("carDark", 393), ("tiger1", 354)):
        write_boxes(tmp_path / f"{name}.txt", still_boxes(n))
    ds = open_dataset("otb", tmp_path, partial=True)
    assert ds.sequence_names() == ["CarDark", "Human4_2", "Jogging_1", "Tiger1"]
    assert len(ds.load("Tiger1")) == 349


def test_every_dataset_is_registered():
    assert sorted(DATASETS) == sorted(
        ["uav", "uav20l", "lasot", "lasot_ext", "nfs", "avist", "got10k_test", "got10k_val", "trackingnet", "otb"]
    )
