"""The grm metadata record: build, write into an ONNX file, read back (onnx and ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from grm.export.metadata import build_metadata, read_metadata, write_metadata
from grm.runtime.errors import ArtifactMismatchError
from grm.runtime.params import METADATA_KEY, ModelMetadata
from grm.runtime.version import __version__
from grm.train.config import get_config


def _identity() -> onnx.ModelProto:
    vi = helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 2))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 2))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [vi], [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_metadata_round_trips_through_file_and_onnxruntime(tmp_path: Path) -> None:
    config = get_config("vitb_256")
    meta = build_metadata(
        config,
        precision="fp16",
        opset=18,
        checkpoint_sha256="ab" * 32,
        outputs_masks=True,
        extra={"exporter": "dynamo"},
    )
    model = _identity()
    write_metadata(model, build_metadata(config, precision="fp32", opset=17, checkpoint_sha256="", outputs_masks=False))
    write_metadata(model, meta)  # replaces the older record
    assert [p.key for p in model.metadata_props] == [METADATA_KEY]
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    back = read_metadata(path)
    assert back == meta
    assert back.tracker.thresholds["NFS"] == 0.6 and back.tracker.search_size == 256
    assert back.depth == 12 and back.package_version == __version__ and back.extra == {"exporter": "dynamo"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert ModelMetadata.from_json(session.get_modelmeta().custom_metadata_map[METADATA_KEY]) == meta


def test_missing_record_and_bad_precision() -> None:
    with pytest.raises(ArtifactMismatchError, match="has no 'grm' metadata"):
        read_metadata(_identity())
    with pytest.raises(ArtifactMismatchError, match="precision 'int4'"):
        build_metadata(get_config("tiny"), precision="int4", opset=17, checkpoint_sha256="", outputs_masks=False)
