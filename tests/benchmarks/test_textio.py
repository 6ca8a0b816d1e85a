"""Box and flag files in every separator and number format the toolkits write, and atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from grm.benchmarks.naming import find_result, name_key, result_files
from grm.benchmarks.textio import format_boxes, format_ints, read_boxes, read_flags
from grm.runtime.atomic import atomic_write_text
from grm.runtime.errors import InputError


@pytest.mark.parametrize(
    "text",
    [
        "1,2,3,4\n5.5,6,7,8\n",
        "1\t2\t3\t4\n5.5\t6\t7\t8",
        "1 2 3 4\r\n5.5 6 7 8\r\n\n",
        "1,2,3,4,\n5.5 ,\t6,7;8\n",  # trailing comma, mixed separators (OTB BlurCar1 mixes tab and space)
    ],
)
def test_read_boxes_accepts_any_separator(tmp_path, text):
    path = tmp_path / "a.txt"
    path.write_text(text)
    assert read_boxes(path).tolist() == [[1, 2, 3, 4], [5.5, 6, 7, 8]]


def test_read_boxes_keeps_nan_and_rejects_bad_rows(tmp_path):
    path = tmp_path / "uav.txt"
    path.write_text("1,2,3,4\nNaN,NaN,NaN,NaN\n")
    assert np.isnan(read_boxes(path)[1]).all()
    path.write_text("1,2,3\n")
    with pytest.raises(InputError, match=r"uav.txt:1: expected 4 values"):
        read_boxes(path)
    path.write_text("1,2,x,4\n")
    with pytest.raises(InputError, match="cannot read numbers"):
        read_boxes(path)
    with pytest.raises(InputError, match="cannot read box file"):
        read_boxes(tmp_path / "missing.txt")


def test_flags_on_one_line_or_many(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("0,0,1,0")
    assert read_flags(path).tolist() == [0, 0, 1, 0]
    path.write_text("0\n1\n")
    assert read_flags(path).tolist() == [0, 1]


def test_formats_and_atomic_write(tmp_path):
    boxes = np.array([[1.23456, -2.5, 3.99, 4.0]])
    assert format_boxes(boxes) == "1.2346,-2.5000,3.9900,4.0000\n"
    assert format_ints(boxes) == "1,-2,3,4\n"  # truncation toward zero, like astype(int)
    target = tmp_path / "sub" / "seq.txt"
    atomic_write_text(target, "x\n")
    atomic_write_text(target, "y\n")
    assert target.read_text() == "y\n"
    assert [p.name for p in target.parent.iterdir()] == ["seq.txt"]


def test_result_file_names_match_across_toolkits(tmp_path):
    for name in ("jogging-1", "Human4.2", "carDark", "car1_1", "car11", "Tiger1_time", "all_boxes"):
        (tmp_path / f"{name}.txt").write_text("1,1,1,1\n")
    files = result_files(tmp_path)
    assert find_result(files, "Jogging_1").name == "jogging-1.txt"
    assert find_result(files, "Human4_2").name == "Human4.2.txt"
    assert find_result(files, "CarDark").name == "carDark.txt"
    assert find_result(files, "uav_car1_1", ("car1_1",)).name == "car1_1.txt"
    assert find_result(files, "uav_car11", ("car11",)).name == "car11.txt"
    assert find_result(files, "Tiger1") is None  # timing files are not results
    assert name_key("Skating2.1") == name_key("skating2_1") != name_key("Skating21")
    (tmp_path / "Jogging_1.txt").write_text("1,1,1,1\n")
    with pytest.raises(InputError, match="name the same sequence"):
        result_files(tmp_path)
