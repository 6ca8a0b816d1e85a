"""Checks of grm-tracker's GPU paths against the CPU, for a machine with an NVIDIA GPU (run by check_device.sh).

    python tests/gpu/check_device.py ort        # ONNX Runtime CUDA EP vs CPU
    python tests/gpu/check_device.py tensorrt   # TensorRT FP32 engine, then INT8 through grm-calibrate --engine

Both track the fixture sequence (``sequence.npz`` of the upstream tiny fixture: tests/data/upstream_tiny, else
../shared/fixtures/upstream_tiny) with the bundled tiny demo model (``GRM_CHECK_MODEL`` overrides it) and
compare with ONNX Runtime on the CPU: the network outputs on the very crops the CPU tracker cut, and the boxes
of both trackers. Exit status: 0 passed, 1 failed, 77 skipped (TensorRT not installed), 2 unusable setup.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from grm.runtime import contract
from grm.runtime.backends import open_model
from grm.runtime.backends.base import Backend
from grm.runtime.demo import DEMO_MODEL
from grm.runtime.errors import GrmError
from grm.runtime.geometry import iou_xywh
from grm.runtime.tracker import Tracker

REPO = Path(__file__).resolve().parents[2]
SKIP = 77
FIXTURE_DIRS = (
    REPO / "tests" / "data" / "upstream_tiny",
    Path(os.environ.get("GRM_SHARED_DIR", REPO.parent / "shared")) / "fixtures" / "upstream_tiny",
)


@dataclass(frozen=True)
class Tolerance:
    """Largest accepted differences: output maps (absolute), boxes (pixels), and the least mean box IoU."""

    maps: float
    box_px: float | None
    mean_iou: float


@dataclass(frozen=True)
class Comparison:
    """How a backend differs from the reference on one sequence."""

    name: str
    frames: int
    map_error: float
    box_error: float
    mean_iou: float

    def failures(self, tol: Tolerance) -> list[str]:
        bad = []
        if not self.map_error <= tol.maps:
            bad.append(f"output maps differ by {self.map_error:.2e} > {tol.maps:.0e}")
        if tol.box_px is not None and not self.box_error <= tol.box_px:
            bad.append(f"boxes differ by {self.box_error:.3f} px > {tol.box_px} px")
        if not self.mean_iou >= tol.mean_iou:
            bad.append(f"mean box IoU {self.mean_iou:.3f} < {tol.mean_iou}")
        return bad

    def line(self) -> str:
        return (f"{self.name}: {self.frames} frames, max map error {self.map_error:.2e}, "
                f"max box error {self.box_error:.3f} px, mean IoU {self.mean_iou:.4f}")  # fmt: skip


class Recorder:
    """A backend wrapper that keeps a copy of every input and output (the crops the tracker cut)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.metadata = backend.metadata
        self.name = backend.name
        self.calls: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.backend.run(inputs)
        self.calls.append(({k: np.array(v, copy=True) for k, v in inputs.items()}, outputs))
        return outputs

    def close(self) -> None:
        self.backend.close()


def fixture_sequence() -> tuple[np.ndarray, np.ndarray]:
    """RGB frames (N, H, W, 3) and ground-truth xywh boxes of the fixture sequence."""
    for folder in FIXTURE_DIRS:
        if (folder / "sequence.npz").is_file():
            with np.load(folder / "sequence.npz") as data:
                return data["frames"], data["gt"]
    print(f"setup: no sequence.npz in {' or '.join(str(f) for f in FIXTURE_DIRS)}")
    raise SystemExit(2)


def track(backend: Backend, frames: np.ndarray, gt: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Boxes of every frame after the first (the tracker initialised on gt[0])."""
    tracker = Tracker(backend)
    tracker.initialize(frames[0], gt[0])
    return [tracker.track(frame).box_xywh for frame in frames[1:]]


def compare(model: Path, reference: str, backend: str, frames: np.ndarray, gt: np.ndarray,
            test_model: Path | None = None) -> Comparison:  # fmt: skip
    """``backend`` (on ``test_model``, default ``model``) against ``reference`` (on ``model``)."""
    ref = Recorder(open_model(model, backend=reference))
    test = open_model(test_model or model, backend=backend)
    try:
        ref_boxes = track(ref, frames, gt)
        test_boxes = track(test, frames, gt)
        map_error = 0.0
        for inputs, expected in ref.calls:
            got = test.run(inputs)
            for name in contract.OUTPUT_NAMES:
                map_error = max(map_error, float(np.max(np.abs(got[name] - expected[name]))))
        name = f"{test.name} vs {ref.name}"
    finally:
        ref.close()
        test.close()
    box_error = float(np.max(np.abs(np.subtract(test_boxes, ref_boxes))))
    mean_iou = float(np.mean([iou_xywh(a, b) for a, b in zip(test_boxes, ref_boxes, strict=True)]))
    return Comparison(name, len(ref_boxes), map_error, box_error, mean_iou)


def report(comparison: Comparison, tol: Tolerance) -> bool:
    failures = comparison.failures(tol)
    print(("PASS " if not failures else "FAIL ") + comparison.line())
    for failure in failures:
        print(f"     {failure}")
    return not failures


def check_ort(model: Path) -> int:
    """CUDA EP against the CPU; TF32 (ONNX Runtime's CUDA default) allows 2e-2 on the maps."""
    frames, gt = fixture_sequence()
    result = compare(model, "onnxruntime", "ort-cuda", frames, gt)
    return 0 if report(result, Tolerance(maps=2e-2, box_px=1.0, mean_iou=0.98)) else 1


def write_sequences(root: Path, frames: np.ndarray, gt: np.ndarray) -> list[Path]:
    """The fixture as two OTB-layout sequences (img/0001.png ..., groundtruth_rect.txt) for grm-calibrate."""
    half = len(frames) // 2
    folders = []
    for name, part in (("fixtureA", slice(0, half)), ("fixtureB", slice(half, None))):
        folder = root / name
        (folder / "img").mkdir(parents=True)
        for i, frame in enumerate(frames[part], start=1):
            cv2.imwrite(str(folder / "img" / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        np.savetxt(folder / "groundtruth_rect.txt", gt[part], fmt="%.2f", delimiter=",")
        folders.append(folder)
    return folders


def check_tensorrt(model: Path) -> int:
    """FP32 engine from grm's builder vs ONNX Runtime CPU; INT8 from grm-calibrate --engine when onnx is here."""
    try:
        import tensorrt
    except ImportError:
        print("SKIP tensorrt is not installed (pip install tensorrt --extra-index-url https://pypi.nvidia.com)")
        return SKIP
    from grm.runtime.backends.manifest import read_manifest
    from grm.runtime.backends.trt_build import build_engine

    frames, gt = fixture_sequence()
    ok = True
    with tempfile.TemporaryDirectory(prefix="grm-check-") as tmp:
        work = Path(tmp)
        plan = build_engine(model, work / "fp32.plan", timing_cache=work / "timing.cache").plan
        print(f"     built {plan.name} with TensorRT {tensorrt.__version__}: "
              f"{read_manifest(plan).metadata.precision}")  # fmt: skip
        fp32 = compare(model, "onnxruntime", "tensorrt", frames, gt, test_model=plan)
        ok &= report(fp32, Tolerance(maps=5e-3, box_px=0.5, mean_iou=0.99))
        ok &= check_int8(model, work, frames, gt)
    return 0 if ok else 1


def check_int8(model: Path, work: Path, frames: np.ndarray, gt: np.ndarray) -> bool:
    """grm-calibrate --engine on the fixture, then the INT8 engine against the Q/DQ model on the CPU.

    INT8 tracks may drift apart over a sequence, so only the outputs on the same crops are held to a bound.
    """
    try:
        import onnx  # noqa: F401 (grm-calibrate needs it)
    except ImportError:
        print("SKIP int8: grm-calibrate needs the onnx package (pip install onnx)")
        return True
    from grm.runtime.backends.manifest import read_manifest

    executable = shutil.which("grm-calibrate")
    if executable is None:
        print("FAIL int8: grm-calibrate is not on PATH (pip install -e .[gpu] installs it)")
        return False
    data = write_sequences(work / "data", frames, gt)
    qdq = work / "int8.onnx"
    command = [executable, "--model", str(model), "--output", str(qdq),
               "--samples", "16", "--max-auc-drop", "100", "--engine",
               *(arg for folder in data for arg in ("--data", str(folder)))]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=100, check=False)  # noqa: S603
    if done.returncode != 0:
        print(f"FAIL grm-calibrate --engine exited {done.returncode}: {done.stderr.strip()[-600:]}")
        return False
    plan = qdq.with_suffix(".plan")
    precision = read_manifest(plan).metadata.precision
    if precision != "int8":
        print(f"FAIL {plan.name}: the manifest says {precision}, not int8")
        return False
    result = compare(qdq, "onnxruntime", "tensorrt", frames, gt, test_model=plan)
    return report(result, Tolerance(maps=0.1, box_px=None, mean_iou=0.0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", choices=("ort", "tensorrt"))
    args = parser.parse_args(argv)
    model = Path(os.environ.get("GRM_CHECK_MODEL") or DEMO_MODEL)
    if not model.is_file():
        print(f"setup: model {model} not found (set GRM_CHECK_MODEL to a grm .onnx export)")
        return 2
    try:
        return check_ort(model) if args.check == "ort" else check_tensorrt(model)
    except GrmError as e:
        print(f"FAIL {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
