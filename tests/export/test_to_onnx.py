"""ONNX export of the tiny fixture model: contract, static shapes, metadata, lint, and parity with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from grm.export import parity
from grm.export.metadata import read_metadata
from grm.export.onnx_lint import DENIED_OPS, lint
from grm.export.options import check_opset
from grm.export.parity_data import crop_pairs
from grm.export.to_onnx import export_onnx, strip_output
from grm.runtime import contract
from grm.runtime.atomic import current_umask
from grm.runtime.errors import ConfigError
from grm.runtime.version import __version__
from grm.train.checkpoint import load_checkpoint


def _io(model: onnx.ModelProto) -> dict[str, tuple[int, tuple[int, ...]]]:
    values = list(model.graph.input) + list(model.graph.output)
    return {
        v.name: (v.type.tensor_type.elem_type, tuple(d.dim_value for d in v.type.tensor_type.shape.dim)) for v in values
    }


def test_graph_follows_the_contract(tiny_fp32_export) -> None:
    model = onnx.load(str(tiny_fp32_export.path))
    params = tiny_fp32_export.metadata.tracker
    shapes = {**contract.input_shapes(params), **contract.output_shapes(params, depth=4)}
    io = _io(model)
    assert [i.name for i in model.graph.input] == list(contract.INPUT_NAMES)
    assert [o.name for o in model.graph.output] == [*contract.OUTPUT_NAMES, contract.DECISIONS]
    for name, shape in shapes.items():
        expected_type = TensorProto.INT32 if name == contract.DECISIONS else TensorProto.FLOAT
        assert io[name] == (expected_type, shape), name
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [18]


def test_single_file_static_and_lint_clean(tiny_fp32_export) -> None:
    path = tiny_fp32_export.path
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no .onnx.data, no temporary leftovers
    assert path.stat().st_mode & 0o777 == 0o666 & ~current_umask()  # not mkstemp's 0600
    assert lint(path) == []
    ops = set(tiny_fp32_export.op_counts)
    assert not ops & (set(DENIED_OPS) | {"TopK", "ArgMax", "NonZero", "OneHot", "ScatterND"})
    assert {"Softmax", "LayerNormalization", "Less", "Greater"} <= ops


def test_metadata_round_trips(tiny_fp32_export) -> None:
    meta = read_metadata(tiny_fp32_export.path)
    assert meta == tiny_fp32_export.metadata
    assert meta.config == "tiny" and meta.precision == "fp32" and meta.opset == 18 and meta.depth == 4
    assert meta.outputs_masks and meta.checkpoint_sha256 == "ab" * 32 and meta.package_version == __version__
    assert meta.tracker.thresholds["UAV"] == 0.55 and meta.tracker.search_size == 128
    assert meta.extra["exporter"] == "torch.onnx.export(dynamo=True)"


def test_onnxruntime_matches_pytorch_on_real_crops(tiny_fp32_export, tiny_model, real_sequences: Path) -> None:
    pairs, source = crop_pairs(tiny_fp32_export.metadata.tracker, real_sequences, per_sequence=1)
    assert source.startswith("real frames") and len(pairs) == 4
    session = parity.open_session(tiny_fp32_export.path, threads=1)
    stats = parity.compare(parity.ort_runner(session), tiny_model, pairs)
    assert [s.threshold for s in stats] == [0.0, 0.4, 0.55, 0.6]
    for s in stats:
        assert max(s.max_abs.values()) <= 1e-5
        assert s.decision_agreement == 1.0 and s.decision_agreement_per_block == [1.0, 1.0, 1.0]
        assert s.min_iou > 0.9999
        assert len(s.cross_share_per_block) == 3 and 0 < np.mean(s.cross_share_per_block) < 1  # mixed decisions
    assert parity.failures(stats, parity.TOLERANCES["fp32"]) == []


def test_official_fixture_through_onnxruntime(tiny_fp32_export, tiny_outputs) -> None:
    """The exported file reproduces the official implementation's outputs and decisions (fixture)."""
    session = parity.open_session(tiny_fp32_export.path, threads=1)
    for index, threshold in enumerate((0.0, 0.4, 0.55, 0.6)):
        for b in range(2):
            feeds = {
                contract.TEMPLATE: tiny_outputs["template"][b : b + 1],
                contract.SEARCH: tiny_outputs["search"][b : b + 1],
                contract.THRESHOLD: np.array([threshold], dtype=np.float32),
            }
            score, size, offset, decisions = session.run(None, feeds)
            np.testing.assert_array_equal(decisions[0], tiny_outputs["decisions"][index, b, 1:])
            for got, key in ((score, "score_map"), (size, "size_map"), (offset, "offset_map")):
                np.testing.assert_allclose(got[0], tiny_outputs[key][index, b], atol=1e-5, rtol=0)


def test_strip_output_removes_only_the_decisions_branch(tiny_fp32_export) -> None:
    full = onnx.load(str(tiny_fp32_export.path))
    stripped = onnx.load(str(tiny_fp32_export.path))
    strip_output(stripped, contract.DECISIONS)
    assert [o.name for o in stripped.graph.output] == list(contract.OUTPUT_NAMES)
    kept = {n.name for n in stripped.graph.node}
    removed = sorted(n.op_type for n in full.graph.node if n.name not in kept)
    assert removed == ["Cast", "Concat", "Unsqueeze", "Unsqueeze", "Unsqueeze"]  # stacking 3 blocks, int32 cast
    onnx.checker.check_model(stripped, full_check=True)


@pytest.mark.parametrize("opset", [17, 22])
def test_unsupported_opset_is_refused(opset: int) -> None:
    with pytest.raises(ConfigError, match=f"opset {opset} is not supported; choose 18..21"):
        check_opset(opset)


def test_a_file_the_lint_rejects_never_reaches_its_path(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from grm.export import to_onnx
    from grm.runtime.errors import ArtifactMismatchError

    def reject(path, precision=None, dynamic_batch=False):  # noqa: ANN001, ANN202
        assert Path(path).parent == tmp_path and Path(path).is_file()  # checked beside its final path
        raise ArtifactMismatchError("dynamic shape")

    monkeypatch.setattr(to_onnx, "verify_file", reject)
    graph = onnx.helper.make_graph([], "g", [], [])
    target = tmp_path / "m.onnx"
    with pytest.raises(ArtifactMismatchError, match=f"export of {target} rejected: dynamic shape"):
        to_onnx._save_verified(onnx.helper.make_model(graph), target, "fp32")
    assert list(tmp_path.iterdir()) == []  # no model, no temporary file


@pytest.mark.parametrize(("track_file", "dataset"), [("track_lasot.npz", "lasot"), ("track_otb.npz", "otb")])
def test_exported_file_tracks_like_the_official_tracker(
    tiny_fp32_export, upstream_tiny: Path, track_file, dataset
) -> None:
    """Export -> runtime backend -> Tracker reproduces the official tracker's boxes (fixture) to 1e-3 px."""
    from grm.runtime.backends import open_model
    from grm.runtime.tracker import Tracker

    with np.load(upstream_tiny / "sequence.npz") as seq, np.load(upstream_tiny / track_file) as ref:
        frames, gt, expected = seq["frames"], seq["gt"], ref["boxes"]
        threshold = float(ref["threshold"])
    backend = open_model(tiny_fp32_export.path, backend="onnxruntime", config="tiny", threads=1)
    try:
        assert backend.metadata.tracker.threshold_for(dataset) == threshold
        tracker = Tracker(backend, threshold=threshold)
        tracker.initialize(frames[0], gt[0].tolist())
        boxes = [list(gt[0])] + [list(tracker.track(frame).box_xywh) for frame in frames[1:]]
    finally:
        backend.close()
    np.testing.assert_allclose(np.asarray(boxes), expected, atol=1e-3, rtol=0)


def test_roimax_model_exports_with_template_mask_input(tiny_model, tmp_path: Path) -> None:
    from grm.runtime.backends import open_model

    from .test_static_model import roi_model

    roi = roi_model(tiny_model, "roimax")
    exported = export_onnx(roi, tmp_path / "roi.onnx")
    model = onnx.load(str(exported.path))
    assert [i.name for i in model.graph.input] == [*contract.INPUT_NAMES, contract.TEMPLATE_MASK]
    assert _io(model)[contract.TEMPLATE_MASK] == (TensorProto.FLOAT, (1, 16))
    pairs, _ = crop_pairs(exported.metadata.tracker, None)
    assert pairs[0].template.box_mask.shape == (1, 16) and 0 < pairs[0].template.box_mask.sum() < 16
    run = parity.ort_runner(parity.open_session(exported.path, threads=1))
    decisions = parity.ort_runner(parity.open_session(exported.with_decisions_graph, threads=1))
    stats = parity.compare(run, roi, pairs[:2], decisions_run=decisions)
    assert parity.failures(stats, parity.TOLERANCES["fp32"]) == []
    open_model(exported.path, backend="onnxruntime", threads=1).close()  # the runtime accepts the 4th input


def test_file_carries_no_debug_records_or_local_paths(tiny_fp32_export, tiny_checkpoint: Path) -> None:
    """The exporter's per-node stack traces (absolute source paths) and FX records are stripped."""
    model = onnx.load(str(tiny_fp32_export.path))
    graph = model.graph
    for item in [*graph.node, *graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        assert not item.metadata_props and not item.doc_string, item.name
    assert not graph.doc_string and not model.doc_string
    assert [p.key for p in model.metadata_props] == ["grm"]
    raw = tiny_fp32_export.path.read_bytes()
    repo = Path(__file__).resolve().parents[2]
    for local in (str(repo), str(tiny_checkpoint.parent), str(tiny_fp32_export.path.parent), "static_model.py"):
        assert local.encode() not in raw, local


def test_exports_of_one_checkpoint_are_byte_identical(
    tiny_fp32_export, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another copy of the checkpoint, another working folder, another output folder: the same bytes."""
    copy = tmp_path / "elsewhere" / tiny_checkpoint.name
    copy.parent.mkdir()
    copy.write_bytes(tiny_checkpoint.read_bytes())
    monkeypatch.chdir(copy.parent)
    model = load_checkpoint(copy, "tiny")
    again = export_onnx(model, tmp_path / "out" / "grm_tiny.onnx", with_decisions=True, checkpoint_sha256="ab" * 32)
    assert again.path.read_bytes() == tiny_fp32_export.path.read_bytes()
