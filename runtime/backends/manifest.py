"""The sidecar manifest of a TensorRT plan: ``<plan>.json`` next to a plain ``.plan``/``.engine`` file.

A TensorRT plan only runs on the TensorRT version and GPU it was built for, and carries no tracker
parameters. The manifest holds the model's :class:`ModelMetadata` fields plus::

    tensorrt_version    "10.13.0.35"   version of the TensorRT that built the plan
    gpu_name            "NVIDIA H100 80GB HBM3"
    compute_capability  "9.0"          (also accepted: [9, 0])
    plan_sha256         hex digest of the plan file

The metadata part carries the engine's batch (``batch``: N, or 0 for dynamic) and, for a dynamic engine, the
optimization profile it was built with (``extra.batch_profile``: ``{"min": 1, "opt": 4, "max": 16}``).

The runtime refuses a plan whose manifest disagrees with the installed TensorRT (major.minor.patch), the
GPU (name and compute capability) or the plan's bytes, and names the command that rebuilds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grm.runtime.atomic import atomic_write_text, sha256_file
from grm.runtime.backends.io_check import parse_metadata
from grm.runtime.errors import ArtifactMismatchError
from grm.runtime.params import ModelMetadata

ENGINE_FIELDS = ("tensorrt_version", "gpu_name", "compute_capability", "plan_sha256")
BATCH_PROFILE_KEY = "batch_profile"
"""Key of a dynamic-batch model's TensorRT profile in its metadata's ``extra`` (see trt_build.BatchProfile)."""


@dataclass(frozen=True)
class EngineManifest:
    """What a plan was built from and for."""

    metadata: ModelMetadata
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    plan_sha256: str

    def to_json(self) -> str:
        data = json.loads(self.metadata.to_json())
        data.update(
            tensorrt_version=self.tensorrt_version,
            gpu_name=self.gpu_name,
            compute_capability=f"{self.compute_capability[0]}.{self.compute_capability[1]}",
            plan_sha256=self.plan_sha256,
        )
        return json.dumps(data, sort_keys=True, indent=2)


def manifest_path(plan: str | Path) -> Path:
    """``engine.plan`` -> ``engine.plan.json``."""
    plan = Path(plan)
    return plan.with_name(plan.name + ".json")


def rebuild_command(plan: str | Path, metadata: ModelMetadata | None = None) -> str:
    """The command that rebuilds a plan for this machine's TensorRT and GPU.

    FP32/FP16 plans come from ``grm-export``. INT8 plans come from ``grm-calibrate --engine``, which writes
    ``<output>.plan`` beside its Q/DQ ``--output``; it starts from the FP32 export (grm-export's default name
    ``grm_<config>.onnx``) and calibration sequences, which the manifest cannot know.
    """
    config = metadata.config if metadata else "NAME"
    fp16 = " --fp16" if metadata and metadata.precision == "fp16" else ""
    if metadata and metadata.precision == "int8":
        qdq = Path(plan).with_suffix(".onnx")
        return f"grm-calibrate --model grm_{config}.onnx --data SEQUENCES --output {qdq} --engine"
    return f"grm-export --config {config}{fp16}{batch_options(metadata)} --engine --output {plan}"


def batch_options(metadata: ModelMetadata | None) -> str:
    """The grm-export options that give a model its batch: none for batch 1, ``--batch N``, or ``--batch dynamic``
    with the recorded profile's ``--batch-min/--batch-opt/--batch-max``."""
    if metadata is None or metadata.batch == 1:
        return ""
    if not metadata.dynamic_batch:
        return f" --batch {metadata.batch}"
    profile = metadata.extra.get(BATCH_PROFILE_KEY)
    bounds = ""
    if isinstance(profile, dict):
        bounds = "".join(f" --batch-{k} {profile[k]}" for k in ("min", "opt", "max") if k in profile)
    return f" --batch dynamic{bounds}"


def parse_compute_capability(value: Any) -> tuple[int, int]:
    """Accept "8.6", 8.6 or [8, 6]."""
    try:
        if isinstance(value, list | tuple):
            major, minor = (int(v) for v in value)
        else:
            major_s, minor_s = str(value).split(".")
            major, minor = int(major_s), int(minor_s)
    except (TypeError, ValueError) as e:
        raise ArtifactMismatchError(f"manifest compute_capability {value!r} is not of the form 'major.minor'") from e
    return major, minor


def read_manifest(plan: str | Path) -> EngineManifest:
    """Read and validate ``<plan>.json``; a missing or incomplete manifest -> ArtifactMismatchError."""
    path = manifest_path(plan)
    if not path.is_file():
        raise ArtifactMismatchError(
            f"TensorRT plan {plan} has no manifest {path.name}; rebuild it with: {rebuild_command(plan)}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactMismatchError(f"cannot read manifest {path}: {e}; rebuild with: {rebuild_command(plan)}") from e
    if not isinstance(data, dict):
        raise ArtifactMismatchError(f"manifest {path} is not a JSON object; rebuild with: {rebuild_command(plan)}")
    missing = [k for k in ENGINE_FIELDS if k not in data]
    if missing:
        raise ArtifactMismatchError(f"manifest {path} lacks {missing}; rebuild with: {rebuild_command(plan)}")
    engine = {k: data.pop(k) for k in ENGINE_FIELDS}
    metadata = parse_metadata(json.dumps(data), str(path))
    return EngineManifest(
        metadata=metadata,
        tensorrt_version=str(engine["tensorrt_version"]),
        gpu_name=str(engine["gpu_name"]),
        compute_capability=parse_compute_capability(engine["compute_capability"]),
        plan_sha256=str(engine["plan_sha256"]).lower(),
    )


def write_manifest(plan: str | Path, manifest: EngineManifest) -> Path:
    """Write ``<plan>.json`` atomically."""
    return atomic_write_text(manifest_path(plan), manifest.to_json() + "\n")


def _release(version: str) -> tuple[str, ...]:
    """major.minor.patch of a TensorRT version string (the build number is ignored)."""
    return tuple(version.strip().split(".")[:3])


def check_plan_hash(plan: str | Path, manifest: EngineManifest) -> None:
    """Refuse a plan whose bytes are not the ones the manifest describes."""
    actual = sha256_file(plan)
    if actual != manifest.plan_sha256:
        raise ArtifactMismatchError(
            f"{plan} does not match its manifest (sha256 {actual[:12]}… != {manifest.plan_sha256[:12]}…); "
            f"rebuild with: {rebuild_command(plan, manifest.metadata)}"
        )


def check_environment(
    plan: str | Path,
    manifest: EngineManifest,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
) -> None:
    """Refuse a plan built for another TensorRT release or another GPU."""
    rebuild = rebuild_command(plan, manifest.metadata)
    if _release(tensorrt_version) != _release(manifest.tensorrt_version):
        raise ArtifactMismatchError(
            f"{plan} was built with TensorRT {manifest.tensorrt_version} but TensorRT {tensorrt_version} is "
            f"installed; rebuild with: {rebuild}"
        )
    if tuple(compute_capability) != manifest.compute_capability or gpu_name.strip() != manifest.gpu_name.strip():
        built = f"{manifest.gpu_name} (sm {manifest.compute_capability[0]}.{manifest.compute_capability[1]})"
        here = f"{gpu_name} (sm {compute_capability[0]}.{compute_capability[1]})"
        raise ArtifactMismatchError(f"{plan} was built for {built} but this GPU is {here}; rebuild with: {rebuild}")
