"""Small, valid grm models and clips for runtime tests.

The fake ONNX model is a "brightness tracker": the score map is ``sigmoid(4 * avgpool16(mean_c(search)))``,
so the peak sits on the bright cells of the search crop; size and offset maps are constants. On a clip of a
white square moving over black, it follows the square deterministically. Geometry is the ``tiny`` config's
(template 64, search 128, stride 16 -> 8x8 maps, depth 4 -> decisions [1, 3, 64]).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper

from grm.runtime.params import METADATA_KEY, ModelMetadata, TrackerParams

TINY = TrackerParams(
    template_size=64,
    template_factor=2.0,
    search_size=128,
    search_factor=4.0,
    thresholds={"DEFAULT": 0.0, "LASOT": 0.4, "UAV": 0.55},
)
FEAT = TINY.feat_size
DEPTH = 4
SQUARE = 20  # side of the moving square, px
SIZE_NORM = 0.25  # SQUARE / search crop side (ceil(sqrt(20*20) * 4) = 80 px)


def tiny_metadata(config: str = "tiny", decisions: bool = False, params: TrackerParams = TINY) -> ModelMetadata:
    return ModelMetadata(config=config, tracker=params, opset=17, outputs_masks=decisions, depth=DEPTH)


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node(
        "Constant",
        [],
        [name],
        value=helper.make_tensor(name + "_t", TensorProto.FLOAT, value.shape, value.ravel().tolist()),
    )


def _qdq_nodes() -> list[onnx.NodeProto]:
    """Symmetric INT8 Q/DQ of the search crop (scale 1/127, zero point 0), as grm-calibrate writes them."""
    return [
        helper.make_node(
            "Constant", [], ["q_scale"], value=helper.make_tensor("q_scale_t", TensorProto.FLOAT, [], [1.0 / 127.0])
        ),
        helper.make_node("Constant", [], ["q_zero"], value=helper.make_tensor("q_zero_t", TensorProto.INT8, [], [0])),
        helper.make_node("QuantizeLinear", ["search", "q_scale", "q_zero"], ["search_q"]),
        helper.make_node("DequantizeLinear", ["search_q", "q_scale", "q_zero"], ["search_dq"]),
    ]


def _nodes(nan: bool, decisions: bool, f: int = FEAT, qdq: bool = False) -> list[onnx.NodeProto]:
    nodes = [
        *(_qdq_nodes() if qdq else []),
        helper.make_node("ReduceMean", ["search_dq" if qdq else "search"], ["grey"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["grey"], ["pooled"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("ReduceMean", ["template"], ["tmean"], axes=[1, 2, 3], keepdims=0),
        _const("four", np.array(4.0, np.float32)),
        _const("zero", np.array(0.0, np.float32)),
        helper.make_node("Mul", ["pooled", "four"], ["logit0"]),
        helper.make_node("Mul", ["tmean", "zero"], ["tzero"]),
        helper.make_node("Mul", ["threshold", "zero"], ["thzero"]),
        helper.make_node("Add", ["tzero", "thzero"], ["unused"]),
        helper.make_node("Add", ["logit0", "unused"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score_map"]),
        helper.make_node("Mul", ["pooled", "zero"], ["pzero"]),
        _const("size_c", np.full((1, 2, f, f), SIZE_NORM, np.float32)),
        _const("offset_c", np.full((1, 2, f, f), math.nan if nan else 0.5, np.float32)),
        helper.make_node("Add", ["size_c", "pzero"], ["size_map"]),
        helper.make_node("Add", ["offset_c", "pzero"], ["offset_map"]),
    ]
    if decisions:
        shape = helper.make_tensor("dshape", TensorProto.INT64, [3], [1, 1, f * f])
        nodes += [
            helper.make_node("Greater", ["score_map", "threshold"], ["joined"]),
            helper.make_node("Cast", ["joined"], ["joined64"], to=TensorProto.INT64),
            helper.make_node("Constant", [], ["dshape_c"], value=shape),
            helper.make_node("Reshape", ["joined64", "dshape_c"], ["joined_flat"]),
            helper.make_node("Concat", ["joined_flat"] * (DEPTH - 1), ["decisions"], axis=1),
        ]
    return nodes


def build_model(
    path: Path,
    *,
    metadata: ModelMetadata | None = None,
    with_metadata: bool = True,
    nan: bool = False,
    decisions: bool = False,
    search_size: int = 128,
    qdq: bool = False,
) -> Path:
    """Write the brightness-tracker ONNX model with grm metadata (``metadata`` overrides the tiny one).

    ``qdq`` quantizes the search crop with a QuantizeLinear/DequantizeLinear pair and marks the metadata
    ``int8``, like a grm-calibrate model (ONNX Runtime CPU runs it; TensorRT builds it as explicit INT8).
    """
    f = search_size // 16
    value = helper.make_tensor_value_info
    inputs = [
        value("template", TensorProto.FLOAT, [1, 3, 64, 64]),
        value("search", TensorProto.FLOAT, [1, 3, search_size, search_size]),
        value("threshold", TensorProto.FLOAT, [1]),
    ]
    outputs = [
        value("score_map", TensorProto.FLOAT, [1, 1, f, f]),
        value("size_map", TensorProto.FLOAT, [1, 2, f, f]),
        value("offset_map", TensorProto.FLOAT, [1, 2, f, f]),
    ]
    if decisions:
        outputs.append(value("decisions", TensorProto.INT64, [1, DEPTH - 1, f * f]))
    graph = helper.make_graph(_nodes(nan, decisions, f, qdq), "fake_grm", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="grm-tests")
    model.ir_version = 8
    if with_metadata:
        meta = metadata or tiny_metadata(decisions=decisions)
        if qdq and metadata is None:
            meta = dataclasses.replace(meta, precision="int8")
        helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def square_frames(n: int, step: int = 2, size: tuple[int, int] = (120, 160), vanish_at: int | None = None):
    """BGR frames (H, W) of a white SQUARE-px square moving right by ``step`` px per frame over black.

    Returns the frames and the ground-truth xywh boxes; from ``vanish_at`` on the square is gone (black frames).
    """
    frames, boxes = [], []
    for i in range(n):
        frame = np.zeros((*size, 3), np.uint8)
        x, y = 30 + step * i, 50
        if vanish_at is None or i < vanish_at:
            frame[y : y + SQUARE, x : x + SQUARE] = 255
        frames.append(frame)
        boxes.append((float(x), float(y), float(SQUARE), float(SQUARE)))
    return frames, boxes


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def write_folder(folder: Path, frames: list[np.ndarray], names: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"{i + 1}.png" for i in range(len(frames))]
    for name, frame in zip(names, frames, strict=True):
        cv2.imwrite(str(folder / name), frame)
    return folder


class DeviceBinding:
    """An IOBinding of a session on a GPU: ONNX Runtime copies a bound input to the device when it is bound
    (``IOBinding::BindInput`` -> ``CopyOneInputAcrossDevices``), so later changes to the host buffer are not
    seen unless the input is bound again. Outputs bound to host buffers are written by the run."""

    def __init__(self, ort: object, real: object) -> None:
        self._ort, self.real = ort, real
        self.device_inputs: dict[str, object] = {}  # the device copies, kept alive like ONNX Runtime keeps them
        self.input_binds = 0
        self.output_syncs = 0

    def bind_ortvalue_input(self, name: str, value: object) -> None:
        self.bind_cpu_input(name, value.numpy())  # type: ignore[attr-defined]

    def bind_cpu_input(self, name: str, array: np.ndarray) -> None:
        self.device_inputs[name] = self._ort.OrtValue.ortvalue_from_numpy(np.array(array, copy=True))  # type: ignore[attr-defined]
        self.real.bind_ortvalue_input(name, self.device_inputs[name])  # type: ignore[attr-defined]
        self.input_binds += 1

    def bind_ortvalue_output(self, name: str, value: object) -> None:
        self.real.bind_ortvalue_output(name, value)  # type: ignore[attr-defined]

    def synchronize_inputs(self) -> None:
        self.real.synchronize_inputs()  # type: ignore[attr-defined]

    def synchronize_outputs(self) -> None:
        self.output_syncs += 1
        self.real.synchronize_outputs()  # type: ignore[attr-defined]


class DeviceSession:
    """An ``onnxruntime.InferenceSession`` that reports the requested GPU providers as active and binds like a
    GPU session (:class:`DeviceBinding`); a real CPU session computes underneath.

    Use: ``monkeypatch.setattr(ort, "InferenceSession", functools.partial(DeviceSession, ort.InferenceSession))``.
    """

    def __init__(self, real_session: type, path: str, sess_options: object = None, providers: list | None = None):
        import onnxruntime

        self._ort = onnxruntime
        self._real = real_session(path, sess_options=sess_options, providers=["CPUExecutionProvider"])
        self.requested = list(providers or ["CPUExecutionProvider"])
        self.providers = [p[0] if isinstance(p, tuple) else p for p in self.requested]
        self.bindings: list[DeviceBinding] = []

    def get_providers(self) -> list[str]:
        return list(self.providers)

    def __getattr__(self, name: str) -> object:  # get_inputs, get_outputs, get_modelmeta ...
        return getattr(self._real, name)

    def io_binding(self) -> DeviceBinding:
        self.bindings.append(DeviceBinding(self._ort, self._real.io_binding()))
        return self.bindings[-1]

    def run_with_iobinding(self, binding: DeviceBinding, run_options: object = None) -> None:
        self._real.run_with_iobinding(binding.real, run_options)
