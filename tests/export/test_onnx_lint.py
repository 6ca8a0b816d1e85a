"""ONNX lint rules on small hand-built graphs: each rule fires on a bad graph and stays quiet on a good one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from grm.export.onnx_lint import check, lint, op_census
from grm.runtime.errors import ArtifactMismatchError


def _model(nodes, inputs, outputs, inits=(), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name: str, dims, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, dims)


def _relu(dims=(1, 4), opset: int = 17) -> onnx.ModelProto:
    return _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", dims)], [_vi("y", dims)], opset=opset)


def _messages(model: onnx.ModelProto, precision: str | None = None) -> str:
    return " | ".join(str(i) for i in lint(model, precision))


def test_clean_static_graph_passes(tmp_path: Path) -> None:
    model = _relu()
    assert lint(model) == []
    onnx.save(model, tmp_path / "m.onnx")
    check(tmp_path / "m.onnx")
    assert op_census(tmp_path / "m.onnx") == {"Relu": 1}


def test_old_opset_and_dynamic_io_are_reported() -> None:
    assert "opset 13 < 17" in _messages(_relu(opset=13))
    text = _messages(_relu(dims=("batch", 4)))
    assert "x: has a non-static shape ['batch', 4]" in text and "y: has a non-static shape" in text


def test_denied_ops_are_reported() -> None:
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]), helper.make_node("Shape", ["x"], ["s"])]
    model = _model(nodes, [_vi("x", (1, 4))], [_vi("nz", (2, 4), TensorProto.INT64), _vi("s", (2,), TensorProto.INT64)])
    text = _messages(model)
    assert "op NonZero is not allowed (data-dependent output shape)" in text
    assert "op Shape is not allowed" in text


def test_topk_needs_a_constant_k() -> None:
    k_init = numpy_helper.from_array(np.array([2], dtype=np.int64), "k")
    outs = [_vi("v", (1, 2)), _vi("i", (1, 2), TensorProto.INT64)]
    good = _model([helper.make_node("TopK", ["x", "k"], ["v", "i"])], [_vi("x", (1, 4))], outs, [k_init])
    assert lint(good) == []
    bad = _model(
        [helper.make_node("TopK", ["x", "kk"], ["v", "i"])],
        [_vi("x", (1, 4)), _vi("kk", (1,), TensorProto.INT64)],
        outs,
    )
    assert "input 1 ('kk') is computed at run time" in _messages(bad)


def test_unbacked_intermediate_dim_is_reported() -> None:
    model = _relu()
    model.graph.value_info.append(_vi("mid", ("u0", 4)))
    assert "mid: has symbolic (data-dependent) dims ['u0']" in _messages(model)


def _fp16_cast_graph(island: bool) -> onnx.ModelProto:
    """x(fp16) -> Cast(FLOAT) -> consumer; a LayerNorm island with fp32 weights is fine, an Add with fp16 is not."""
    w16 = numpy_helper.from_array(np.ones(4, dtype=np.float16), "w16")
    if island:
        scale = numpy_helper.from_array(np.ones(4, dtype=np.float32), "g")
        bias = numpy_helper.from_array(np.zeros(4, dtype=np.float32), "b")
        nodes = [
            helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT),
            helper.make_node("LayerNormalization", ["x32", "g", "b"], ["n32"], axis=-1),
            helper.make_node("Cast", ["n32"], ["n16"], to=TensorProto.FLOAT16),
            helper.make_node("Mul", ["n16", "w16"], ["y"]),
        ]
        inits = [w16, scale, bias]
    else:
        nodes = [
            helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["x32", "w16"], ["y"]),
        ]
        inits = [w16]
    return _model(nodes, [_vi("x", (1, 4), TensorProto.FLOAT16)], [_vi("y", (1, 4), TensorProto.FLOAT16)], inits)


def test_fp16_island_is_accepted_and_leftover_cast_is_not() -> None:
    assert lint(_fp16_cast_graph(island=True)) == []
    text = _messages(_fp16_cast_graph(island=False))
    assert "leftover Cast(to=FLOAT) feeds Add" in text
    assert "type check failed" in text
    assert lint(_fp16_cast_graph(island=False), precision="fp32") == []  # FP16 rules off when told fp32


@pytest.mark.parametrize(
    ("zero", "expected"),
    [
        (np.array(0, dtype=np.int8), None),
        (np.array(3, dtype=np.int8), "zero point is not 0"),
        (np.array(0, dtype=np.uint8), "zero point type UINT8 is not INT8"),
        (None, "has no zero point"),
    ],
)
def test_qdq_zero_points(zero: np.ndarray | None, expected: str | None) -> None:
    inits = [numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s")]
    args = ["x", "s"]
    if zero is not None:
        inits.append(numpy_helper.from_array(zero, "z"))
        args.append("z")
    nodes = [
        helper.make_node("QuantizeLinear", args, ["q"]),
        helper.make_node("DequantizeLinear", ["q", *args[1:]], ["y"]),
    ]
    model = _model(nodes, [_vi("x", (1, 4))], [_vi("y", (1, 4))], inits, opset=19)
    issues = _messages(model, precision="fp32")
    if expected is None:
        assert issues == ""
    else:
        assert expected in issues


def test_check_raises_one_line_listing_everything() -> None:
    with pytest.raises(ArtifactMismatchError) as info:
        check(_relu(dims=("n", 4), opset=11))
    message = str(info.value)
    assert "\n" not in message and message.startswith("ONNX lint found 3 problem(s)")
