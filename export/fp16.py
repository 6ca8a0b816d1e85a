"""FP16 export policy: FP16 compute with FP32 islands, FP32 inputs and outputs.

Choice and why:

* **FP32 I/O with casts.** The graph takes float32 ``template``/``search``/``threshold`` and returns float32
  maps, casting to FP16 right after the inputs and back to FP32 before the outputs. The runtime and the
  tracker then handle FP32 and FP16 models the same way, and the threshold comparison keeps full precision.
* **FP32 islands**: every LayerNorm (LayerNorm after self-attention can overflow in FP16), the attention
  softmax with its additive policy mask, the division predictor (its two log-probabilities decide token
  groups; a flip changes every later value) and the head's final sigmoid/clamp (``1 - 1e-4`` is not
  representable in FP16). Everything else (patch embedding, QKV/proj/MLP matmuls, head convs) is FP16.
* **Mixed precision is built in PyTorch, not by converting the ONNX afterwards.** Converters such as
  ``onnxconverter_common.convert_float_to_float16`` relabel tensors but keep pre-existing ``Cast(to=FLOAT)``
  nodes, which produces type clashes that ONNX Runtime and TensorRT 11 reject (docs/deployment.md, FP16).
  Here every Cast is emitted by the exporter from explicit ``.float()``/``.to()`` calls, so the graph is
  type-consistent by construction; the lint still checks strict type inference and leftover casts, and
  :func:`check_fp32_islands` checks that the islands really are FP32.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx
from onnx import TensorProto
from torch import nn

from grm.runtime.errors import ArtifactMismatchError

FP16_POLICY = "fp16 weights/activations; LayerNorm, attention softmax, division predictor and head sigmoid in fp32"
FP32_ISLAND_OPS = ("LayerNormalization", "Softmax", "LogSoftmax", "Sigmoid")
"""Ops that must compute in FP32 in an FP16 model (the division predictor ends in LogSoftmax)."""


def half_keeping_islands(modules: Iterable[nn.Module], keep_fp32: Iterable[nn.Module]) -> None:
    """Cast ``modules`` to FP16, then return every LayerNorm inside them and ``keep_fp32`` to FP32 (in place)."""
    modules = list(modules)
    layer_norms = [m for root in modules for m in root.modules() if isinstance(m, nn.LayerNorm)]
    for module in modules:
        module.half()
    for module in [*layer_norms, *keep_fp32]:
        module.float()


def check_fp32_islands(model: onnx.ModelProto) -> None:
    """Every island op of an FP16 model must read FP32 data.

    Raises:
        ArtifactMismatchError: an island op computes in another type.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
    types.update({i.name: i.data_type for i in inferred.graph.initializer})
    wrong = [
        f"{n.op_type} {n.name!r}"
        for n in inferred.graph.node
        if n.op_type in FP32_ISLAND_OPS and types.get(n.input[0]) != TensorProto.FLOAT
    ]
    if wrong:
        raise ArtifactMismatchError(
            f"FP16 export left {len(wrong)} island op(s) outside FP32 ({', '.join(wrong[:3])}); this is a bug in grm-export"
        )


def fp16_census(model: onnx.ModelProto) -> dict[str, int]:
    """Counts of FP16 and FP32 initializers and of Cast nodes (for reports)."""
    inits = model.graph.initializer
    return {
        "fp16_initializers": sum(i.data_type == TensorProto.FLOAT16 for i in inits),
        "fp32_initializers": sum(i.data_type == TensorProto.FLOAT for i in inits),
        "casts": sum(n.op_type == "Cast" for n in model.graph.node),
    }
