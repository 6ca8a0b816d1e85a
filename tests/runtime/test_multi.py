"""Several targets at once: MultiTracker over batch-N, batch-1 and dynamic-batch models, and the batch in the
model contract (metadata, shape checks, backends that take up to N template/search pairs per call).

Each target tracked by MultiTracker must get exactly the boxes Tracker gives it alone with the batch-1 model.
The batched models here are a batch-1 model run once per row (:class:`LoopingBackend`: the bundled demo model,
or the tiny fixture checkpoint), and small brightness-tracker ONNX graphs built with a batch dimension.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from grm.runtime import contract
from grm.runtime.backends import open_model
from grm.runtime.backends.cuda_memory import CudaPythonApi
from grm.runtime.backends.manifest import EngineManifest, write_manifest
from grm.runtime.backends.trt import open_plan
from grm.runtime.errors import ArtifactMismatchError, ConfigError, InputError
from grm.runtime.multi import MultiTracker
from grm.runtime.params import METADATA_KEY, ModelMetadata
from grm.runtime.tracker import Tracker

from .runtime_fakes import SIZE_NORM, TINY, square_frames, tiny_metadata
from .trt_fakes import PLAN_BYTES, DataType, Engine, FakeCudart, Tensor, TensorIOMode, make_trt

DEMO = Path(__file__).resolve().parents[2] / "runtime" / "assets" / "demo.onnx"
BATCHES = [1, 2, 4, 0]  # 0 = dynamic


class LoopingBackend:
    """A batch-N model (N = 0: dynamic) made of a batch-1 backend run once per row.

    A static model must receive exactly N rows per call (the caller pads); ``calls`` keeps the rows of each call
    and ``searches`` its search input.
    """

    def __init__(self, inner, batch: int) -> None:
        self.inner = inner
        self.metadata = dataclasses.replace(inner.metadata, batch=batch)
        self.name = f"looping[{batch}]"
        self.calls: list[int] = []
        self.searches: list[np.ndarray] = []

    def run(self, inputs):
        rows = np.asarray(inputs[contract.SEARCH]).shape[0]
        assert rows == self.metadata.batch or (self.metadata.dynamic_batch and rows >= 1), rows
        assert all(np.asarray(v).shape[0] == rows for v in inputs.values())
        self.calls.append(rows)
        self.searches.append(np.array(inputs[contract.SEARCH]))
        outs = [self.inner.run({k: np.asarray(v)[r : r + 1] for k, v in inputs.items()}) for r in range(rows)]
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def demo():
    return open_model(DEMO, backend="onnxruntime", threads=1)


@pytest.fixture(scope="module")
def fixture_clip(upstream_tiny: Path):
    """40 RGB frames of the conformance clip and three boxes on its first frame (the target and two others)."""
    seq = np.load(upstream_tiny / "sequence.npz")
    return seq["frames"], [tuple(seq["gt"][0]), (20.0, 20.0, 30.0, 25.0), (120.0, 80.0, 40.0, 30.0)]


def alone(backend, frames, box, threshold: float = 0.0) -> np.ndarray:
    """Boxes (frames-1, 4) and scores of one target tracked by Tracker with the batch-1 backend."""
    tracker = Tracker(backend, threshold=threshold)
    tracker.initialize(frames[0], box)
    results = [tracker.track(f) for f in frames[1:]]
    return np.array([[*r.box_xywh, r.score] for r in results])


def together(tracker: MultiTracker, backend: LoopingBackend, frames, boxes, thresholds=None):
    """Boxes+scores per target id, and the backend calls of every frame."""
    ids = tracker.initialize(frames[0], boxes, thresholds)
    tracks: dict[int, list] = {i: [] for i in ids}
    calls = []
    for frame in frames[1:]:
        before = len(backend.calls)
        for i, r in tracker.track(frame).items():
            tracks[i].append([*r.box_xywh, r.score])
        calls.append(len(backend.calls) - before)
    return {i: np.array(t) for i, t in tracks.items()}, calls


@pytest.mark.parametrize("batch", BATCHES)
def test_three_targets_match_tracking_each_alone(demo, fixture_clip, batch: int) -> None:
    frames, boxes = fixture_clip
    backend = LoopingBackend(demo, batch)
    tracks, calls = together(MultiTracker(backend, threshold=0.4), backend, frames, boxes)
    assert list(tracks) == [1, 2, 3]
    for i, box in zip(tracks, boxes, strict=True):
        ref = alone(demo, frames, box, threshold=0.4)
        np.testing.assert_array_equal(tracks[i], ref, err_msg=f"target {i}")
    assert calls == [1 if batch == 0 else math.ceil(3 / batch)] * (len(frames) - 1)
    assert set(backend.calls) == {3 if batch == 0 else batch}
    assert len({tuple(t[-1, :4]) for t in tracks.values()}) == 3  # three different targets, not one copied


@pytest.mark.shared
@pytest.mark.parametrize("batch", BATCHES)
def test_fixture_weights_on_a_real_sequence_with_a_threshold_per_target(
    upstream_tiny: Path, real_sequences: Path, batch: int
) -> None:
    """The official-format tiny checkpoint (PyTorch) on a real OTB sequence; targets mix dataset presets."""
    pytest.importorskip("torch")
    from grm.runtime.backends import open_checkpoint

    inner = open_checkpoint(upstream_tiny / "GRM_ep0001.pth.tar", config="tiny", threads=1)
    folder = real_sequences / "Crossing"
    names = sorted((folder / "img").glob("*.jpg"))[:25]
    frames = [cv2.cvtColor(cv2.imread(str(n)), cv2.COLOR_BGR2RGB) for n in names]
    first = folder.joinpath("groundtruth_rect.txt").read_text().splitlines()[0]
    gt = [float(v) for v in first.replace("\t", ",").replace(" ", ",").split(",") if v]
    boxes = [tuple(gt), (40.0, 60.0, 30.0, 60.0), (250.0, 120.0, 40.0, 40.0)]
    thresholds = [0.4, 0.0, 0.55]
    backend = LoopingBackend(inner, batch)
    tracks, calls = together(MultiTracker(backend), backend, frames, boxes, thresholds)
    for i, box, threshold in zip(tracks, boxes, thresholds, strict=True):
        ref = alone(inner, frames, box, threshold)
        assert np.abs(tracks[i][:, :4] - ref[:, :4]).max() <= 1e-3, f"target {i}"
        np.testing.assert_array_equal(tracks[i], ref, err_msg=f"target {i}")
    assert calls == [1 if batch == 0 else math.ceil(3 / batch)] * (len(frames) - 1)


def test_six_targets_on_a_batch_4_model_take_two_calls_the_second_padded(demo, fixture_clip) -> None:
    frames, (box, *_) = fixture_clip
    boxes = [(box[0] + 6 * k, box[1] + 3 * k, box[2], box[3]) for k in range(6)]
    backend = LoopingBackend(demo, 4)
    tracker = MultiTracker(backend, threshold=0.4)
    tracker.initialize(frames[0], boxes)
    results = tracker.track(frames[1])
    assert backend.calls == [4, 4] and len(results) == 6
    second = backend.searches[1]
    np.testing.assert_array_equal(second[2], second[1])  # the padding repeats the last live pair
    np.testing.assert_array_equal(second[3], second[1])
    assert not np.array_equal(second[0], second[1])
    for i, b in zip(results, boxes, strict=True):
        assert results[i].box_xywh == tuple(alone(demo, frames[:2], b, 0.4)[0, :4])


def test_add_and_remove_in_the_middle_of_a_sequence(demo, fixture_clip) -> None:
    frames, boxes = fixture_clip
    backend = LoopingBackend(demo, 2)
    tracker = MultiTracker(backend)
    assert tracker.initialize(frames[0], boxes[:2]) == [1, 2]
    got: dict[int, list] = {1: [], 2: [], 3: []}
    calls = []
    for index in range(1, 30):
        if index == 10:
            assert tracker.add(frames[9], boxes[2]) == 3
        if index == 20:
            tracker.remove(1)
        before = len(backend.calls)
        for i, r in tracker.track(frames[index]).items():
            got[i].append(r.box_xywh)
        calls.append(len(backend.calls) - before)
    assert tracker.ids == [2, 3]
    assert calls == [1] * 9 + [2] * 10 + [1] * 10  # 2 targets, then 3 (ceil(3/2) = 2), then 2
    np.testing.assert_array_equal(got[1], alone(demo, frames[:20], boxes[0])[:, :4])
    np.testing.assert_array_equal(got[2], alone(demo, frames[:30], boxes[1])[:, :4])
    np.testing.assert_array_equal(got[3], alone(demo, frames[9:30], boxes[2])[:, :4])
    assert tracker.add(frames[29], boxes[0]) == 4  # ids are never reused


def test_templates_are_stacked_once_per_group_of_targets(demo, fixture_clip) -> None:
    frames, boxes = fixture_clip
    backend = LoopingBackend(demo, 2)
    seen: list[np.ndarray] = []
    run = backend.run
    backend.run = lambda inputs: (seen.append(inputs[contract.TEMPLATE]), run(inputs))[1]  # type: ignore[method-assign]
    tracker = MultiTracker(backend)
    tracker.initialize(frames[0], boxes[:2])
    tracker.track(frames[1])
    tracker.track(frames[2])
    assert len(seen) == 2 and seen[1] is seen[0]  # the same stacked array, not a new copy per frame
    tracker.add(frames[2], boxes[2])
    tracker.track(frames[3])
    assert len(seen) == 4 and seen[2] is not seen[0] and seen[3].shape[0] == 2  # the third target, padded
    np.testing.assert_array_equal(seen[3][0], seen[3][1])


def test_bad_input_is_named(demo, fixture_clip) -> None:
    frames, boxes = fixture_clip
    tracker = MultiTracker(LoopingBackend(demo, 4))
    ids = tracker.initialize(frames[0], boxes)
    outside = r"^box 2 of 3: initial box \[500.0, 50.0, 20.0, 20.0\] lies outside the 192x144 image"
    with pytest.raises(InputError, match=outside):
        tracker.initialize(frames[0], [boxes[0], (500, 50, 20, 20), boxes[2]])
    assert tracker.ids == ids  # nothing changed
    with pytest.raises(InputError, match=r"no target with id 7 to remove; tracked ids: \[1, 2, 3\]"):
        tracker.remove(7)
    with pytest.raises(InputError, match="no target with id 9"):
        tracker.track_each({9: frames[1]})
    with pytest.raises(InputError, match="zero or negative size"):
        tracker.add(frames[0], (10, 10, 0, 5))
    with pytest.raises(InputError, match="2 thresholds given for 3 boxes"):
        tracker.initialize(frames[0], boxes, [0.0, 0.4])
    assert MultiTracker(LoopingBackend(demo, 0)).track(frames[1]) == {}  # no targets: no call, no error


def test_nan_output_names_frame_and_target_and_moves_nobody(fixture_clip, nan_onnx: Path) -> None:
    frames, boxes = fixture_clip
    tracker = MultiTracker(LoopingBackend(open_model(nan_onnx, threads=1), 2))
    tracker.initialize(frames[0], boxes)
    before = tracker.states
    with pytest.raises(InputError, match="^frame 1, target 1: network output offset_map contains NaN or infinity$"):
        tracker.track(frames[1])
    assert tracker.states == before


# --------------------------------------------------------------------------- the batch in the model contract


def test_metadata_batch_defaults_to_one_and_round_trips() -> None:
    meta = tiny_metadata()
    assert meta.batch == 1 and not meta.dynamic_batch
    old = meta.to_json().replace('"batch": 1, ', "")
    assert '"batch"' not in old and ModelMetadata.from_json(old).batch == 1  # written before batching existed
    for value, expected in ((4, 4), (0, 0), (None, 0)):
        again = ModelMetadata.from_json(dataclasses.replace(meta, batch=value).to_json())
        assert again.batch == expected and again.dynamic_batch == (expected == 0)
    for bad in (-1, 2.5, True, "4"):
        with pytest.raises(ConfigError, match="model batch"):
            dataclasses.replace(meta, batch=bad)


def test_contract_shapes_take_the_batch() -> None:
    assert contract.input_shapes(TINY) == {"template": (1, 3, 64, 64), "search": (1, 3, 128, 128), "threshold": (1,)}
    assert contract.input_shapes(TINY, 4)["threshold"] == (4,)
    assert contract.output_shapes(TINY, depth=4, batch=3)["decisions"] == (3, 3, 64)
    assert contract.template_mask_shape(TINY, 2) == (2, 16)


def brightness_model(path: Path, batch: int | str, metadata: ModelMetadata) -> Path:
    """Brightness tracker with leading dimension ``batch`` (an int, or a name for a dynamic one):
    score = sigmoid(4 * avgpool16(mean_c(search)) + threshold), so each row's threshold shows in its scores."""
    value, f = helper.make_tensor_value_info, TINY.feat_size

    def const(name, array):
        tensor = onnx.numpy_helper.from_array(np.asarray(array), name + "_t")
        return helper.make_node("Constant", [], [name], value=tensor)

    nodes = [
        const("zero", np.float32(0)),
        const("four", np.float32(4)),
        const("axes", np.array([1, 2, 3], np.int64)),
        const("size_c", np.full((1, 2, f, f), SIZE_NORM, np.float32)),
        const("offset_c", np.full((1, 2, f, f), 0.5, np.float32)),
        helper.make_node("ReduceMean", ["search"], ["grey"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["grey"], ["pooled"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("ReduceMean", ["template"], ["tmean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Mul", ["tmean", "zero"], ["tzero"]),
        helper.make_node("Unsqueeze", ["threshold", "axes"], ["th"]),
        helper.make_node("Mul", ["pooled", "four"], ["logit0"]),
        helper.make_node("Add", ["logit0", "th"], ["logit1"]),
        helper.make_node("Add", ["logit1", "tzero"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score_map"]),
        helper.make_node("Mul", ["pooled", "zero"], ["pzero"]),
        helper.make_node("Add", ["size_c", "pzero"], ["size_map"]),
        helper.make_node("Add", ["offset_c", "pzero"], ["offset_map"]),
    ]
    inputs = [
        value("template", TensorProto.FLOAT, [batch, 3, 64, 64]),
        value("search", TensorProto.FLOAT, [batch, 3, 128, 128]),
        value("threshold", TensorProto.FLOAT, [batch]),
    ]
    maps = (("score_map", 1), ("size_map", 2), ("offset_map", 2))
    outputs = [value(n, TensorProto.FLOAT, [batch, c, f, f]) for n, c in maps]
    model = helper.make_model(
        helper.make_graph(nodes, "batched_fake_grm", inputs, outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _pairs(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "template": rng.standard_normal((count, 3, 64, 64), dtype=np.float32),
        "search": rng.standard_normal((count, 3, 128, 128), dtype=np.float32),
        "threshold": np.linspace(0.0, 0.9, count, dtype=np.float32),
    }


@pytest.fixture(scope="module")
def batched_onnx(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("batched")
    return {
        b: brightness_model(folder / f"b{b}.onnx", b or "batch", dataclasses.replace(tiny_metadata(), batch=b))
        for b in BATCHES
    }


@pytest.mark.parametrize("batch", [2, 4, 0])
def test_onnx_runtime_runs_each_row_as_the_batch_1_model(batched_onnx, batch: int) -> None:
    single = open_model(batched_onnx[1], threads=1)
    model = open_model(batched_onnx[batch], threads=1)
    assert model.metadata.batch == batch
    for count in [1, 2] if batch == 2 else [1, 3, 4] if batch == 4 else [1, 5]:
        pairs = _pairs(count, seed=count)
        out = model.run(pairs)
        assert out["score_map"].shape == (count, 1, 8, 8)  # padding rows of a static batch are dropped
        for r in range(count):
            ref = single.run({k: v[r : r + 1] for k, v in pairs.items()})
            for name in contract.OUTPUT_NAMES:
                np.testing.assert_array_equal(out[name][r : r + 1], ref[name], err_msg=f"{name} row {r}")


def test_static_batch_refuses_more_pairs_than_its_batch(batched_onnx) -> None:
    model = open_model(batched_onnx[2], threads=1)
    too_many = r"^3 template/search pairs given to .*b2\.onnx, whose batch is 2; give at most 2"
    with pytest.raises(InputError, match=too_many):
        model.run(_pairs(3))
    with pytest.raises(InputError, match=r"search input has shape \[2, 3, 64, 64\]"):
        model.run({**_pairs(2), "search": np.zeros((2, 3, 64, 64), np.float32)})
    with pytest.raises(
        InputError, match=r"input 'template' has shape \[2, 3, 32, 32\]; the model takes \[K, \*\[3, 64"
    ):
        model.run({**_pairs(2), "template": np.zeros((2, 3, 32, 32), np.float32)})
    with pytest.raises(InputError, match="input 'threshold' has 3 rows for 2 template/search pairs"):
        model.run({**_pairs(2), "threshold": np.zeros(3, np.float32)})
    shared = model.run({**_pairs(2), "threshold": np.float32([0.5])})  # one value for every pair
    each = model.run({**_pairs(2), "threshold": np.float32([0.5, 0.5])})
    np.testing.assert_array_equal(shared["score_map"], each["score_map"])


def test_batch_in_metadata_must_match_the_file(tmp_path: Path) -> None:
    meta = tiny_metadata()
    cases = [
        (4, 1, r"'template' has shape \[4, 3, 64, 64\] but the model's metadata implies \[1, 3, 64, 64\]"),
        ("batch", 2, r"'template' has dynamic shape \['?None'?, 3, 64, 64\]"),
        (2, 0, r"'template' has shape \[2, 3, 64, 64\] but the model's metadata says dynamic batch"),
    ]
    for k, (dim, declared, message) in enumerate(cases):
        path = brightness_model(tmp_path / f"m{k}.onnx", dim, dataclasses.replace(meta, batch=declared))
        with pytest.raises(ArtifactMismatchError, match=message):
            open_model(path)


@pytest.mark.parametrize("batch", [2, 0])
def test_multitracker_on_a_batched_onnx_model_matches_tracker(batched_onnx, batch: int) -> None:
    frames, truth = square_frames(12)
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
    boxes = [truth[0], (20.0, 40.0, 30.0, 30.0), (60.0, 60.0, 24.0, 20.0)]
    single = open_model(batched_onnx[1], threads=1)
    tracker = MultiTracker(open_model(batched_onnx[batch], threads=1))
    tracker.initialize(frames[0], boxes, thresholds=[0.0, 0.3, 0.6])
    got = [tracker.track(f) for f in frames[1:]]
    for i, box, threshold in zip(tracker.ids, boxes, [0.0, 0.3, 0.6], strict=True):
        ref = alone(single, frames, box, threshold)
        np.testing.assert_array_equal(np.array([[*g[i].box_xywh, g[i].score] for g in got]), ref)
    assert abs(got[-1][1].box_xywh[0] - truth[-1][0]) <= 4  # the target on the square follows it
    batched_alone = alone(open_model(batched_onnx[batch], threads=1), frames, boxes[1], 0.3)  # Tracker, 1 pair per call
    np.testing.assert_array_equal(batched_alone, alone(single, frames, boxes[1], 0.3))


def _row_brightness(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The batched brightness model in numpy, for the fake TensorRT engine."""
    search, threshold = inputs["search"].astype(np.float32), inputs["threshold"].astype(np.float32)
    n = search.shape[0]
    pooled = search.mean(axis=1, keepdims=True).reshape(n, 1, 8, 16, 8, 16).mean(axis=(3, 5))
    return {
        "score_map": 1.0 / (1.0 + np.exp(-(4.0 * pooled + threshold.reshape(n, 1, 1, 1)))),
        "size_map": np.full((n, 2, 8, 8), SIZE_NORM, np.float32),
        "offset_map": np.full((n, 2, 8, 8), 0.5, np.float32),
    }


def test_tensorrt_static_batch_engine_takes_up_to_its_batch(tmp_path: Path) -> None:
    meta = dataclasses.replace(tiny_metadata(), batch=4)
    plan = tmp_path / "b4.plan"
    plan.write_bytes(PLAN_BYTES)
    write_manifest(
        plan,
        EngineManifest(
            metadata=meta,
            tensorrt_version="10.13.0.35",
            gpu_name="NVIDIA Fake GPU",
            compute_capability=(8, 6),
            plan_sha256=hashlib.sha256(PLAN_BYTES).hexdigest(),
        ),
    )
    inp, out = TensorIOMode.INPUT, TensorIOMode.OUTPUT
    shapes = {**contract.input_shapes(TINY, 4), **contract.output_shapes(TINY, batch=4)}
    tensors = [Tensor(n, s, DataType.FLOAT, inp if n in contract.INPUT_NAMES else out) for n, s in shapes.items()]
    engine = Engine(tensors, _row_brightness)
    backend = open_plan(plan, trt=make_trt(engine), cuda=CudaPythonApi(FakeCudart(), native_handle=id))
    pairs = _pairs(3)
    result = backend.run(pairs)
    assert result["score_map"].shape == (3, 1, 8, 8)
    np.testing.assert_allclose(result["score_map"], _row_brightness(pairs)["score_map"], rtol=1e-6)
    with pytest.raises(InputError, match="5 template/search pairs given to .*b4.plan, whose batch is 4"):
        backend.run(_pairs(5))
    frames, truth = square_frames(6)
    tracker = MultiTracker(backend)
    tracker.initialize(frames[0], [truth[0]] * 5)  # five targets: two calls of four
    boxes = tracker.track(frames[1])
    assert len(boxes) == 5 and engine.contexts[0].calls == 3  # one direct call above, then two
    backend.close()
