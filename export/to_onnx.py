"""PyTorch GRM -> static-shape ONNX file with the ``grm`` metadata record, checked and linted.

``batch`` sets the leading dimension of every input and output: N template/search pairs per call (default 1),
or 0 for a dynamic batch, exported with ``dynamic_shapes`` as the symbol ``batch`` (traced at
:data:`DYNAMIC_TRACE_BATCH` pairs, since the exporter specialises sizes 0 and 1) and linted in its
dynamic-batch mode; everything but the batch stays static.

The exporter is pinned: ``torch.onnx.export(..., dynamo=True, opset_version=...)``. The legacy TorchScript
exporter also runs, but leaves ``Shape``/``Expand`` arithmetic that the lint rejects; the dynamo exporter
folds every shape to a constant. The model is one file (no ``.onnx.data``) unless its weights approach
protobuf's 2 GiB limit. The exporter's debug records (source stack traces with local paths) are stripped, so
exports of one checkpoint are byte-identical on any machine with the same package versions.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from grm.export import onnx_lint
from grm.export.fp16 import FP16_POLICY, check_fp32_islands
from grm.export.metadata import build_metadata, write_metadata
from grm.export.options import DEFAULT_OPSET, check_opset
from grm.export.static_model import StaticGrm
from grm.runtime import contract
from grm.runtime.atomic import atomic_path
from grm.runtime.backends.manifest import BATCH_PROFILE_KEY
from grm.runtime.backends.trt_build import BatchProfile
from grm.runtime.errors import ArtifactMismatchError, ConfigError
from grm.runtime.params import ModelMetadata
from grm.train.model import GRM

log = logging.getLogger(__name__)

EXPORTER = "torch.onnx.export(dynamo=True)"
SINGLE_FILE_LIMIT_BYTES = 1_800_000_000
DYNAMIC_TRACE_BATCH = 2
MAX_DYNAMIC_BATCH = 4096
"""Upper bound the exporter is told for a dynamic batch (TensorRT engines take their own profile's max)."""


@dataclass(frozen=True)
class OnnxExport:
    """A written model: its path, metadata, node count per op type, and (when the file has no ``decisions``
    output) the serialized graph that still has it, so parity can compare decisions of the very same export."""

    path: Path
    metadata: ModelMetadata
    op_counts: dict[str, int]
    with_decisions_graph: bytes | None = None


def input_names(model: GRM) -> list[str]:
    """Graph inputs: the contract's three, plus ``template_mask`` for roimax/roiavg models."""
    names = list(contract.INPUT_NAMES)
    return names + [contract.TEMPLATE_MASK] if model.config.model.target_type.startswith("roi") else names


def dummy_inputs(model: GRM, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """Contract-shaped example inputs in :func:`input_names` order, for tracing; values do not matter.

    ``batch`` 0 (dynamic) traces with :data:`DYNAMIC_TRACE_BATCH` pairs."""
    params = model.config.tracker
    rows = batch or DYNAMIC_TRACE_BATCH
    shapes = contract.input_shapes(params, rows)
    gen = torch.Generator().manual_seed(0)
    template = torch.randn(shapes[contract.TEMPLATE], generator=gen)
    search = torch.randn(shapes[contract.SEARCH], generator=gen)
    inputs = (template, search, torch.zeros(shapes[contract.THRESHOLD]))
    if contract.TEMPLATE_MASK in input_names(model):
        inputs += (torch.ones(contract.template_mask_shape(params, rows)),)
    return inputs


def export_onnx(
    model: GRM,
    output: str | Path,
    *,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    with_decisions: bool = False,
    checkpoint_sha256: str = "",
    attention: str = "exact",
    batch: int = 1,
    batch_profile: BatchProfile | None = None,
) -> OnnxExport:
    """Export ``model`` through :class:`StaticGrm`, write metadata, run ``onnx.checker`` and the lint.

    Args:
        model: trained GRM (any mode; it is put in eval mode).
        output: target ``.onnx`` path, replaced atomically.
        precision: "fp32", or "fp16" (FP16 compute with FP32 islands and FP32 inputs/outputs).
        opset: default-domain ONNX opset.
        with_decisions: add the ``decisions`` output (B, depth-1, Nx) int32.
        checkpoint_sha256: digest of the source checkpoint, recorded in the metadata.
        attention: "exact" (the official eps-softmax) or "fast" (plain masked softmax); see :mod:`static_model`.
        batch: template/search pairs per call, N >= 1, or 0 for a dynamic batch.
        batch_profile: for a dynamic batch, the TensorRT profile recorded for later engine builds.

    Raises:
        ArtifactMismatchError: the exported graph fails the checker or the lint.
        ConfigError: a negative batch, or a profile for a static batch.
    """
    check_opset(opset)
    check_batch(batch, batch_profile)
    static = StaticGrm(model, with_decisions=True, half=precision == "fp16", attention=attention, batch=batch)
    extra = {**_provenance(precision), "attention": attention}
    if batch_profile is not None:
        extra[BATCH_PROFILE_KEY] = batch_profile.to_dict()
    meta = build_metadata(
        model.config,
        precision=precision,
        opset=opset,
        checkpoint_sha256=checkpoint_sha256,
        outputs_masks=with_decisions,
        extra=extra,
        batch=batch,
    )
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".grm-export-", dir=target.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        _torch_export(static, dummy_inputs(model, batch), input_names(model), raw, opset)
        proto = onnx.load(str(raw))
    _check_opset_kept(proto, opset)
    strip_debug_info(proto)
    if precision == "fp16":
        check_fp32_islands(proto)
    write_metadata(proto, meta)
    full = None
    if not with_decisions:
        full = proto.SerializeToString()
        strip_output(proto, contract.DECISIONS)
    _save_verified(proto, target, precision, dynamic_batch=batch == 0)
    return OnnxExport(target, meta, onnx_lint.op_census(target), full)


def check_batch(batch: int, profile: BatchProfile | None = None) -> None:
    """A batch is N >= 1 or 0 (dynamic); a TensorRT batch profile belongs to a dynamic batch only.

    Raises:
        ConfigError: otherwise.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise ConfigError(f"batch {batch!r} must be a whole number >= 1, or 0 for a dynamic batch")
    if profile is not None and batch != 0:
        raise ConfigError(
            f"--batch-min/--batch-opt/--batch-max ({profile.describe()}) shape a TensorRT engine of a dynamic "
            f"batch; add --batch dynamic, or drop them for --batch {batch}"
        )


def _provenance(precision: str) -> dict[str, str]:
    extra = {"exporter": EXPORTER, "torch": torch.__version__, "onnx": onnx.__version__, "io_dtype": "float32"}
    if precision == "fp16":
        extra["fp16_policy"] = FP16_POLICY
    return extra


def _torch_export(
    static: StaticGrm, inputs: tuple[torch.Tensor, ...], names: list[str], path: Path, opset: int
) -> None:
    outputs = [*contract.OUTPUT_NAMES, contract.DECISIONS]
    dynamic: dict[str, object] = {}
    if static.batch == 0:  # the leading dim of every input is the one symbol `batch` (outputs follow)
        batch = torch.export.Dim(onnx_lint.BATCH_DIM, min=1, max=MAX_DYNAMIC_BATCH)
        dynamic["dynamic_shapes"] = tuple({0: batch} for _ in inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # exporter chatter about internals; the checker and lint judge the result
        torch.onnx.export(
            static,
            inputs,
            str(path),
            input_names=names,
            output_names=outputs,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            optimize=True,
            verbose=False,
            **dynamic,
        )


def strip_output(proto: onnx.ModelProto, name: str) -> None:
    """Remove graph output ``name`` and every node and initializer that only fed it (in place)."""
    graph = proto.graph
    kept_outputs = [o for o in graph.output if o.name != name]
    del graph.output[:]
    graph.output.extend(kept_outputs)
    needed = {o.name for o in graph.output}
    live = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(live))
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    infos = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)


def strip_debug_info(proto: onnx.ModelProto) -> None:
    """Drop the exporter's per-node and per-value debug records (in place), keeping the model's own metadata.

    The dynamo exporter annotates every node with source stack traces (absolute paths of the exporting machine),
    FX node text and module names. Removing them keeps the file free of local paths and makes exports of one
    checkpoint byte-identical wherever they run; the graph itself is untouched.
    """
    proto.doc_string = ""
    for graph in _graphs(proto):
        graph.doc_string = ""
        del graph.metadata_props[:]
        for item in [*graph.node, *graph.input, *graph.output, *graph.value_info, *graph.initializer]:
            item.doc_string = ""
            del item.metadata_props[:]
    for function in proto.functions:
        function.doc_string = ""
        del function.metadata_props[:]
        for node in function.node:
            node.doc_string = ""
            del node.metadata_props[:]


def _graphs(proto: onnx.ModelProto) -> list[onnx.GraphProto]:
    """The main graph and every subgraph nested in node attributes (If/Loop bodies), depth first."""
    found, stack = [], [proto.graph]
    while stack:
        graph = stack.pop()
        found.append(graph)
        for node in graph.node:
            for attr in node.attribute:
                stack.extend([attr.g] if attr.HasField("g") else [])
                stack.extend(attr.graphs)
    return found


def _check_opset_kept(proto: onnx.ModelProto, opset: int) -> None:
    found = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if found != [opset]:
        raise ArtifactMismatchError(
            f"asked the exporter for opset {opset} but got {found}; try --opset {DEFAULT_OPSET}"
        )


def _save_verified(proto: onnx.ModelProto, target: Path, precision: str, dynamic_batch: bool = False) -> None:
    """Write beside ``target``, run checker and lint on that file, then move it into place (atomic).

    Single file when it fits; otherwise the weights go to ``<name>.data`` beside it, written first.
    """
    external = proto.ByteSize() > SINGLE_FILE_LIMIT_BYTES
    with atomic_path(target) as tmp:
        if external:
            location = target.name + ".data"  # relative to the model's folder, which is the temporary file's
            onnx.save_model(proto, tmp, save_as_external_data=True, all_tensors_to_one_file=True, location=location)
        else:
            onnx.save_model(proto, tmp)
        log.info("checking the exported graph: onnx.checker and the static-shape lint")
        try:
            verify_file(tmp, precision, dynamic_batch)
        except ArtifactMismatchError as e:
            raise ArtifactMismatchError(f"export of {target} rejected: {e}") from e


def verify_file(path: str | Path, precision: str | None = None, dynamic_batch: bool = False) -> None:
    """``onnx.checker`` (full check, by path so external weights resolve) plus the static-shape lint
    (in its dynamic-batch mode for a ``--batch dynamic`` model).

    Raises:
        ArtifactMismatchError: the checker or the lint rejects the file.
    """
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactMismatchError(f"{path} fails onnx.checker: {first}") from e
    onnx_lint.check(path, precision, dynamic_batch)
