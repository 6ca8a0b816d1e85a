"""Protocol ``otb`` reproduces the published OTB-100 numbers of SiamFC-3s and CFNet-conv2.

The released raw results and the OTB toolkit's flat annotation folder live in ../shared/data/otb100 (file
names differ in case and separators, Human4 is ``Human4.2`` vs ``Human4_2``, Tiger1's results start at its
sixth annotated frame).
"""

from __future__ import annotations

import pytest

from grm.benchmarks.analysis import analyze
from grm.benchmarks.datasets import DATASETS, open_dataset
from grm.benchmarks.results import result_sets

PUBLISHED = {"SiamFC-3s": (0.582, 0.771), "cfnet-conv2": (0.568, 0.748)}


@pytest.fixture(scope="module")
def otb100(shared_dir):
    root = shared_dir / "data" / "otb100"
    if not (root / "annotations").is_dir():
        pytest.skip(f"OTB-100 annotations not found under {root}")
    return root


@pytest.mark.shared
def test_published_otb100_numbers(otb100):
    dataset = open_dataset("otb", otb100 / "annotations")
    sets = result_sets([str(otb100 / "results" / name) for name in PUBLISHED], set(DATASETS))
    report = analyze(dataset, sets, protocol="otb")
    assert len(report.sequences) == 100
    for tracker in report.trackers:
        auc, precision = PUBLISHED[tracker.label]
        assert round(tracker.summary.auc / 100, 3) == auc
        assert round(tracker.summary.precision / 100, 3) == precision


@pytest.mark.shared
def test_otb_attribute_breakdown(otb100):
    dataset = open_dataset("otb", otb100 / "annotations")
    names, flags = dataset.attribute_table()
    assert names[:3] == ["IV", "OPR", "SV"] and len(flags) == 100
    assert sum(f[names.index("LR")] for f in flags.values()) == 10  # 10 low-resolution sequences
