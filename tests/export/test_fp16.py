"""FP16 export through the CLI: mixed-precision graph, FP32 islands, and agreement with FP32 on real crops."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import TensorProto

from grm.export.fp16 import FP32_ISLAND_OPS, check_fp32_islands, fp16_census
from grm.export.metadata import read_metadata
from grm.export.onnx_lint import lint
from grm.runtime import contract
from grm.runtime.errors import ArtifactMismatchError


def test_fp16_model_is_mixed_precision_with_fp32_io(tiny_fp16_cli) -> None:
    result, path = tiny_fp16_cli
    assert result.exit_code == 0, result.output
    model = onnx.load(str(path))
    for value in list(model.graph.input) + list(model.graph.output):
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT, value.name
    assert [o.name for o in model.graph.output] == list(contract.OUTPUT_NAMES)  # no --with-decisions
    census = fp16_census(model)
    assert census["fp16_initializers"] > census["fp32_initializers"] > 0 and census["casts"] > 0
    check_fp32_islands(model)
    assert lint(path, precision="fp16") == []
    meta = read_metadata(path)
    assert meta.precision == "fp16" and "LayerNorm" in meta.extra["fp16_policy"]


def test_fp16_meets_agreement_targets_on_real_crops(tiny_fp16_cli) -> None:
    _, path = tiny_fp16_cli
    report = json.loads(path.with_name("grm_tiny_fp16.parity.json").read_text())
    assert report["passed"] and report["precision"] == "fp16" and report["data_source"].startswith("real frames")
    assert [s["threshold"] for s in report["thresholds"]] == [0.0, 0.4, 0.55, 0.6]
    for stats in report["thresholds"]:
        assert stats["decision_agreement"] >= 0.99  # decisions from the same export, via its with-decisions graph
        assert stats["mean_iou"] >= 0.99
        assert len(stats["decision_agreement_per_block"]) == 3


def test_island_check_catches_fp16_softmax() -> None:
    x = onnx.helper.make_tensor_value_info("x", TensorProto.FLOAT16, (1, 4))
    y = onnx.helper.make_tensor_value_info("y", TensorProto.FLOAT16, (1, 4))
    node = onnx.helper.make_node("Softmax", ["x"], ["y"], name="attn_softmax")
    model = onnx.helper.make_model(onnx.helper.make_graph([node], "g", [x], [y]))
    assert "Softmax" in FP32_ISLAND_OPS
    with pytest.raises(ArtifactMismatchError, match="1 island op\\(s\\) outside FP32 \\(Softmax 'attn_softmax'\\)"):
        check_fp32_islands(model)
