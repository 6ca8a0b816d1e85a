"""Find GRM's sensitive parts in an ONNX graph by structure, so exclusions survive any exporter's node names.

``--exclude`` patterns are either a group (``@name``, resolved here) or a shell-style pattern matched
against node names and op types (``'*divide_predict*'``, ``Conv``). Groups:

* ``@predictor``: the division predictor MLP, i.e. every Conv/MatMul/Gemm the division decisions depend on
  between the block's LayerNorm and the comparisons (``Greater``/``Less``) that make them;
* ``@attention``: activation x activation MatMuls (q.k^T and p.v);
* ``@head-last``: the last Conv/MatMul/Gemm of each head branch (nothing quantisable downstream);
* ``@head``: every Conv after the backbone (no MatMul/Gemm downstream);
* ``@patch-embed``: Convs that read a graph input (template/search patch embedding).

LayerNorm, Softmax, GELU, residual adds and the policy-mask arithmetic are never quantised at all: only
:data:`QUANT_OP_TYPES` get Q/DQ nodes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

import onnx

from grm.runtime.errors import InputError

QUANT_OP_TYPES: tuple[str, ...] = ("Conv", "MatMul", "Gemm")
COMPARISONS = ("Greater", "Less", "GreaterOrEqual", "LessOrEqual")
BOUNDARIES = ("LayerNormalization",)
GROUPS = ("predictor", "attention", "head-last", "head", "patch-embed")


class GraphIndex:
    """Producers and consumers of every tensor of a graph."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.nodes = list(graph.node)
        self.initializers = {i.name for i in graph.initializer}
        self.inputs = {i.name for i in graph.input} - self.initializers
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.nodes:
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)

    def is_constant(self, tensor: str) -> bool:
        """Initializer, or output of a Constant node (possibly through Reshape/Transpose/Cast of one)."""
        if tensor in self.initializers:
            return True
        node = self.producer.get(tensor)
        if node is None:
            return False
        if node.op_type == "Constant":
            return True
        return node.op_type in ("Reshape", "Transpose", "Cast", "Identity") and self.is_constant(node.input[0])

    def source(self, tensor: str) -> str:
        """The tensor behind any chain of Cast/Identity nodes (casts a float graph may carry as no-ops)."""
        node = self.producer.get(tensor)
        while node is not None and node.op_type in ("Cast", "Identity"):
            tensor = node.input[0]
            node = self.producer.get(tensor)
        return tensor

    def upstream(self, starts: Iterable[onnx.NodeProto], stop: Sequence[str]) -> list[onnx.NodeProto]:
        """Nodes reachable backwards from ``starts`` (included) without crossing ``stop`` op types."""
        seen: dict[str, onnx.NodeProto] = {}
        stack = list(starts)
        while stack:
            node = stack.pop()
            if node.name in seen or node.op_type in stop:
                continue
            seen[node.name] = node
            stack.extend(self.producer[t] for t in node.input if t in self.producer)
        return list(seen.values())

    def downstream(self, start: onnx.NodeProto) -> list[onnx.NodeProto]:
        """Nodes reachable forwards from ``start`` (excluded)."""
        seen: dict[str, onnx.NodeProto] = {}
        stack = [c for out in start.output for c in self.consumers.get(out, [])]
        while stack:
            node = stack.pop()
            if node.name in seen:
                continue
            seen[node.name] = node
            stack.extend(c for out in node.output for c in self.consumers.get(out, []))
        return list(seen.values())


def _quantisable(nodes: Iterable[onnx.NodeProto]) -> list[str]:
    return [n.name for n in nodes if n.op_type in QUANT_OP_TYPES]


def _predictor(index: GraphIndex) -> list[str]:
    comparisons = [n for n in index.nodes if n.op_type in COMPARISONS]
    return _quantisable(index.upstream(comparisons, BOUNDARIES))


def _attention(index: GraphIndex) -> list[str]:
    return [n.name for n in index.nodes if n.op_type == "MatMul" and not any(index.is_constant(t) for t in n.input[:2])]


def _head(index: GraphIndex, last_only: bool) -> list[str]:
    found = []
    for node in index.nodes:
        if node.op_type not in QUANT_OP_TYPES:
            continue
        later = [n for n in index.downstream(node) if n.op_type in QUANT_OP_TYPES]
        if last_only and not later:
            found.append(node.name)
        elif not last_only and node.op_type == "Conv" and not any(n.op_type in ("MatMul", "Gemm") for n in later):
            found.append(node.name)
    return found


def _patch_embed(index: GraphIndex) -> list[str]:
    return [n.name for n in index.nodes if n.op_type == "Conv" and index.source(n.input[0]) in index.inputs]


def resolve_group(model: onnx.ModelProto, group: str) -> list[str]:
    """Node names of one structural group (see the module docstring)."""
    index = GraphIndex(model.graph)
    finders = {
        "predictor": lambda: _predictor(index),
        "attention": lambda: _attention(index),
        "head-last": lambda: _head(index, last_only=True),
        "head": lambda: _head(index, last_only=False),
        "patch-embed": lambda: _patch_embed(index),
    }
    if group not in finders:
        raise InputError(f"unknown exclusion group @{group}; known groups: {', '.join('@' + g for g in GROUPS)}")
    return finders[group]()


def resolve_exclusions(model: onnx.ModelProto, patterns: Sequence[str]) -> list[str]:
    """Names of the nodes matched by ``patterns`` (groups or fnmatch on name/op type), in graph order.

    A pattern that matches nothing is an error: a silent no-op would leave the model quantised where the
    user asked otherwise.
    """
    matched: set[str] = set()
    for pattern in patterns:
        if pattern.startswith("@"):
            names = set(resolve_group(model, pattern[1:]))
        else:
            names = {n.name for n in model.graph.node if fnmatch.fnmatchcase(n.name, pattern) or n.op_type == pattern}
        if not names:
            raise InputError(f"--exclude {pattern!r} matches no node of the model; check the pattern or the group name")
        matched |= names
    return [n.name for n in model.graph.node if n.name in matched]


def ensure_node_names(model: onnx.ModelProto) -> None:
    """Give unnamed nodes unique names (op type + index), since exclusion works by name."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
