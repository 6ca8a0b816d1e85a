"""Q/DQ structure of the INT8 model, exclusion groups, metadata round trip and input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from grm.calibration.graph import resolve_exclusions, resolve_group
from grm.calibration.quantize import DEFAULT_EXCLUDE, QuantizeOptions, check_fp32_export, quantize
from grm.runtime import contract
from grm.runtime.backends import open_model
from grm.runtime.errors import ArtifactMismatchError, InputError
from grm.runtime.params import METADATA_KEY, ModelMetadata


def _load(result) -> onnx.ModelProto:  # noqa: ANN001
    return onnx.load(str(result.output))


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def test_groups_find_grm_parts_by_structure(tiny_onnx: Path) -> None:
    model = onnx.load(str(tiny_onnx))
    # tiny: 4 blocks, blocks 1-3 divide with a 3-layer MLP; 2 patch embeddings; 3 head branches of 5 convs
    assert len(resolve_group(model, "predictor")) == 9
    assert all("divide_predict" in n for n in resolve_group(model, "predictor"))
    assert len(resolve_group(model, "attention")) == 8  # q.k^T and p.v per block
    assert len(resolve_group(model, "head")) == 15
    assert sorted(resolve_group(model, "head-last")) == sorted(n.name for n in model.graph.node if "conv5" in n.name)
    assert len(resolve_group(model, "patch-embed")) == 2
    assert resolve_exclusions(model, ["Conv"]) == [n.name for n in model.graph.node if n.op_type == "Conv"]
    with pytest.raises(InputError, match="matches no node"):
        resolve_exclusions(model, ["*no_such_layer*"])
    with pytest.raises(InputError, match="unknown exclusion group @mlp"):
        resolve_exclusions(model, ["@mlp"])


def test_qdq_is_symmetric_int8_with_zero_points_zero(tiny_onnx: Path, tiny_int8) -> None:
    model = _load(tiny_int8)
    inits = _initializers(model)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 50
    for node in qdq:
        zero_point = inits[node.input[2]]
        assert zero_point.dtype == np.int8, node.name
        assert not zero_point.any(), node.name
    # weights: one scale per output channel (Conv filters, MatMul/Gemm output columns)
    producer = {o: n for n in model.graph.node for o in n.output}
    checked = 0
    for node in model.graph.node:
        dq = producer.get(node.input[1]) if node.op_type in ("Conv", "MatMul", "Gemm") else None
        quant = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if quant is None or quant.input[0] not in inits:
            continue
        weight, scale = inits[quant.input[0]], inits[dq.input[1]]
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        outputs = weight.shape[0] if node.op_type == "Conv" or trans_b else weight.shape[1]
        assert scale.shape == (outputs,), node.name
        checked += 1
    attention = set(resolve_group(onnx.load(str(tiny_onnx)), "attention"))  # activation x activation: no weights
    assert checked == len(set(tiny_int8.quantized) - attention) == 18  # 16 linear layers + 2 patch embeddings
    assert tiny_int8.preprocessed == "full" and len(tiny_int8.quantized) > 20


def test_excluded_nodes_stay_float(tiny_int8) -> None:
    model = _load(tiny_int8)
    producer = {o: n for n in model.graph.node for o in n.output}
    excluded = set(tiny_int8.excluded)
    assert len(excluded) == 9 + 15  # @predictor + @head
    for node in model.graph.node:
        if node.name in excluded:
            sources = [producer.get(t) for t in node.input]
            assert not any(s is not None and s.op_type == "DequantizeLinear" for s in sources), node.name
    assert excluded.isdisjoint(tiny_int8.quantized)


def test_int8_metadata_round_trip(tiny_onnx: Path, tiny_int8, calib_set) -> None:
    fp32 = check_fp32_export(tiny_onnx)
    props = {p.key: p.value for p in _load(tiny_int8).metadata_props}
    meta = ModelMetadata.from_json(props[METADATA_KEY])
    assert meta == tiny_int8.metadata
    assert meta.precision == "int8" and meta.tracker == fp32.tracker and meta.config == "tiny"
    calibration = meta.extra["calibration"]
    assert calibration["manifest_hash"] == calib_set.hash and calibration["samples"] == 16
    assert calibration["exclude"] == list(DEFAULT_EXCLUDE) and calibration["method"] == "minmax"
    backend = open_model(tiny_int8.output, backend="onnxruntime", threads=1)
    assert backend.metadata.precision == "int8"
    out = backend.run(calib_set.feed(0))
    assert out[contract.DECISIONS].shape == (1, 3, 64) and np.isfinite(out[contract.SCORE_MAP]).all()


def test_only_fp32_grm_exports_are_accepted(tiny_onnx: Path, tiny_int8, tmp_path: Path, calib_set) -> None:
    with pytest.raises(ArtifactMismatchError, match="int8 model with INT8 nodes"):
        check_fp32_export(tiny_int8.output)
    foreign = onnx.load(str(tiny_onnx))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ArtifactMismatchError, match="not a grm-tracker export"):
        check_fp32_export(tmp_path / "foreign.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01 not a protobuf")
    with pytest.raises(ArtifactMismatchError, match="not an ONNX file"):
        check_fp32_export(tmp_path / "junk.onnx")
    with pytest.raises(InputError, match="--method"):
        QuantizeOptions(method="kl")


def test_exclusion_list_is_overridable(tiny_onnx: Path, calib_set, tmp_path: Path) -> None:
    options = QuantizeOptions(exclude=("@attention", "*conv5_*"), preprocess=False)
    result = quantize(tiny_onnx, calib_set, tmp_path / "custom.onnx", options)
    assert result.preprocessed == "none" and len(result.excluded) == 8 + 3
    assert any("divide_predict" in n for n in result.quantized)  # the predictor is quantised now
    assert not any("conv5" in n for n in result.quantized)
