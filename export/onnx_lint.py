"""Static checks that an exported ONNX graph is fixed-shape and friendly to TensorRT and ONNX Runtime.

Rules (each violation is one :class:`LintIssue`):

* opset of the default domain >= :data:`MIN_OPSET` (LayerNormalization is one node from 17 on);
* every graph input and output, and every inferred intermediate shape, has only fixed positive dims
  (a symbolic dim such as ``u0`` is an unbacked, data-dependent size). A dynamic-batch model
  (``dynamic_batch=True``, metadata batch 0) may also have the symbol :data:`BATCH_DIM`: as the leading dim of
  every input and output, and inside intermediate shapes;
* no op from :data:`DENIED_OPS`: data-dependent output shapes (NonZero, Unique, Compress, NonMaxSuppression),
  control flow (If, Loop, Scan), sequences, randomness, and shape arithmetic left in the graph (Shape, Size);
* shape-like inputs (Reshape's shape, TopK's k, Slice's starts/ends, Range, Expand, Tile ...) are constants,
  so a ``Where`` or ``TopK`` can never be driven by a runtime-computed shape. In a dynamic-batch model
  ``Shape`` is allowed and shape-like inputs may also be computed from ``Shape`` outputs and constants
  (never from tensor data);
* in an FP16 graph, no ``Cast(to=FLOAT)`` whose FP32 output meets FP16 operands of its consumer (the
  converter pitfall in docs/deployment.md, FP16) and the graph type-checks in strict mode;
* Q/DQ nodes carry an explicit int8 zero point equal to 0 (TensorRT quantisation is symmetric int8).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from grm.runtime.errors import ArtifactMismatchError

MIN_OPSET = 17
DENIED_OPS: dict[str, str] = {
    "NonZero": "data-dependent output shape",
    "Unique": "data-dependent output shape",
    "Compress": "data-dependent output shape",
    "NonMaxSuppression": "data-dependent output shape",
    "If": "control flow",
    "Loop": "control flow",
    "Scan": "control flow",
    "SequenceConstruct": "sequence type",
    "SequenceAt": "sequence type",
    "SequenceInsert": "sequence type",
    "SequenceEmpty": "sequence type",
    "SplitToSequence": "sequence type",
    "ConcatFromSequence": "sequence type",
    "RandomNormal": "non-deterministic",
    "RandomNormalLike": "non-deterministic",
    "RandomUniform": "non-deterministic",
    "RandomUniformLike": "non-deterministic",
    "Multinomial": "non-deterministic",
    "Bernoulli": "non-deterministic",
    "Shape": "shape arithmetic left in a static graph",
    "Size": "shape arithmetic left in a static graph",
    "StringNormalizer": "string type",
}
# op -> indices of inputs that carry shapes, sizes, axes or counts and must be constants.
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "ConstantOfShape": (0,),
    "TopK": (1,),
    "Range": (0, 1, 2),
    "Slice": (1, 2, 3, 4),
    "Pad": (1, 3),
    "Resize": (1, 2, 3),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Split": (1,),
    "OneHot": (1,),
}
FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
BATCH_DIM = "batch"
"""Name of the leading dimension of a dynamic-batch export (``grm-export --batch dynamic``)."""


@dataclass(frozen=True)
class LintIssue:
    """One rule violation: where (node or tensor name) and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def load_graph_only(model: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    """The model without external weight data (enough for every rule here)."""
    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(str(model), load_external_data=False)


def lint(
    model: onnx.ModelProto | str | Path, precision: str | None = None, dynamic_batch: bool = False
) -> list[LintIssue]:
    """Every rule violation of ``model``; ``precision`` "fp16" enables the FP16 rules (auto-detected if None);
    ``dynamic_batch`` accepts the :data:`BATCH_DIM` leading dimension and the shape arithmetic it needs."""
    proto = load_graph_only(model)
    issues = _check_opset(proto) + _check_io_static(proto, dynamic_batch) + _check_ops(proto.graph, dynamic_batch)
    issues += _check_qdq(proto.graph)
    inferred, error = _infer(proto)
    issues += _check_value_info_static(inferred, dynamic_batch)
    is_fp16 = precision == "fp16" or (precision is None and _has_fp16_weights(proto.graph))
    if is_fp16:
        issues += _check_fp16(inferred, error)
    return issues


def check(model: onnx.ModelProto | str | Path, precision: str | None = None, dynamic_batch: bool = False) -> None:
    """Raise if :func:`lint` finds anything.

    Raises:
        ArtifactMismatchError: one line listing every violation.
    """
    issues = lint(model, precision, dynamic_batch)
    if issues:
        listing = "; ".join(str(i) for i in issues)
        raise ArtifactMismatchError(f"ONNX lint found {len(issues)} problem(s): {listing}")


def op_census(model: onnx.ModelProto | str | Path) -> dict[str, int]:
    """Node count per op type (for reports)."""
    return dict(Counter(n.op_type for n in load_graph_only(model).graph.node))


def _check_opset(model: onnx.ModelProto) -> list[LintIssue]:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions or max(versions) < MIN_OPSET:
        found = max(versions) if versions else "none"
        return [
            LintIssue("opset_import", f"default-domain opset {found} < {MIN_OPSET}; export with --opset 17 or newer")
        ]
    return []


def _static_dims(value: onnx.ValueInfoProto, dynamic_batch: bool = False) -> str | None:
    """None when the value has a tensor type with only fixed positive dims (the leading one may be
    :data:`BATCH_DIM` when ``dynamic_batch``), else a description of the problem."""
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        return "is not a tensor"
    if not tensor.HasField("shape"):
        return "has no shape"
    dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in tensor.shape.dim]
    if dynamic_batch and dims[:1] != [BATCH_DIM]:
        return f"has shape {dims}; a dynamic-batch model's inputs and outputs lead with '{BATCH_DIM}'"
    if all(isinstance(d, int) and d > 0 for d in dims[1 if dynamic_batch else 0 :]):
        return None
    return f"has a non-static shape {dims}"


def _check_io_static(model: onnx.ModelProto, dynamic_batch: bool = False) -> list[LintIssue]:
    issues = []
    for value in list(model.graph.input) + list(model.graph.output):
        problem = _static_dims(value, dynamic_batch)
        if problem:
            issues.append(LintIssue(value.name, problem))
    return issues


def _check_value_info_static(model: onnx.ModelProto, dynamic_batch: bool = False) -> list[LintIssue]:
    issues = []
    allowed = {BATCH_DIM} if dynamic_batch else set()
    for value in model.graph.value_info:
        tensor = value.type.tensor_type
        symbolic = [d.dim_param for d in tensor.shape.dim if d.dim_param and d.dim_param not in allowed]
        if symbolic:
            issues.append(LintIssue(value.name, f"has symbolic (data-dependent) dims {symbolic}"))
    return issues


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    names = {i.name for i in graph.initializer}
    names.update(o for n in graph.node if n.op_type == "Constant" for o in n.output)
    return names


def _shape_derived_names(graph: onnx.GraphProto) -> set[str]:
    """Constants, ``Shape`` outputs, and outputs of nodes computed only from those (shape arithmetic)."""
    names = _constant_names(graph)
    for node in graph.node:  # ONNX graphs are topologically sorted
        if node.op_type == "Shape" or all(i in names for i in node.input if i):
            names.update(node.output)
    return names


def _check_ops(graph: onnx.GraphProto, dynamic_batch: bool = False) -> list[LintIssue]:
    constants = _shape_derived_names(graph) if dynamic_batch else _constant_names(graph)
    issues = []
    for node in graph.node:
        label = f"{node.op_type} node {node.name or node.output[0]!r}"
        if dynamic_batch and node.op_type == "Shape":
            continue
        if node.op_type in DENIED_OPS:
            issues.append(LintIssue(label, f"op {node.op_type} is not allowed ({DENIED_OPS[node.op_type]})"))
        for index in SHAPE_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] and node.input[index] not in constants:
                issues.append(LintIssue(label, f"input {index} ({node.input[index]!r}) is computed at run time"))
    return issues


def _tensor_values(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    values = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = attr.t
    return values


def _check_qdq(graph: onnx.GraphProto) -> list[LintIssue]:
    values = _tensor_values(graph)
    issues = []
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        label = f"{node.op_type} node {node.name or node.output[0]!r}"
        if len(node.input) < 3 or not node.input[2]:
            issues.append(
                LintIssue(label, "has no zero point (defaults to uint8); use symmetric int8 with zero point 0")
            )
            continue
        zero = values.get(node.input[2])
        if zero is None:
            issues.append(LintIssue(label, "zero point is not a constant"))
        elif zero.data_type != TensorProto.INT8:
            issues.append(LintIssue(label, f"zero point type {TensorProto.DataType.Name(zero.data_type)} is not INT8"))
        elif np.any(numpy_helper.to_array(zero) != 0):
            issues.append(LintIssue(label, "zero point is not 0 (TensorRT needs symmetric quantisation)"))
    return issues


def _has_fp16_weights(graph: onnx.GraphProto) -> bool:
    return any(i.data_type == TensorProto.FLOAT16 for i in graph.initializer)


def _infer(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """Shape/type inference; in strict mode first, so type clashes are reported rather than skipped."""
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True), None
    except onnx.shape_inference.InferenceError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return onnx.shape_inference.infer_shapes(model, strict_mode=False), first_line


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    graph = model.graph
    types = {i.name: i.data_type for i in graph.initializer}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        types[value.name] = value.type.tensor_type.elem_type
    return types


def _check_fp16(model: onnx.ModelProto, inference_error: str | None) -> list[LintIssue]:
    issues = [LintIssue("graph", f"type check failed: {inference_error}")] if inference_error else []
    types = _elem_types(model)
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            consumers[name].append(node)
    for node in model.graph.node:
        if node.op_type != "Cast" or _cast_target(node) != TensorProto.FLOAT:
            continue
        for consumer in consumers[node.output[0]]:
            others = {types.get(i) for i in consumer.input if i and i != node.output[0]} & FLOAT_TYPES
            if TensorProto.FLOAT16 in others:
                issues.append(
                    LintIssue(
                        f"Cast node {node.name or node.output[0]!r}",
                        f"leftover Cast(to=FLOAT) feeds {consumer.op_type} {consumer.name!r} next to FP16 operands",
                    )
                )
    return issues


def _cast_target(node: onnx.NodeProto) -> int | None:
    for attr in node.attribute:
        if attr.name == "to":
            return attr.i
    return None
