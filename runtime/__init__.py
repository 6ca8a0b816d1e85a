"""grm.runtime: the lean GRM tracker (numpy + OpenCV + ONNX Runtime / TensorRT). Never imports torch."""

from grm.runtime.backends import open_model
from grm.runtime.errors import (
    ArtifactMismatchError,
    BackendUnavailableError,
    CheckpointError,
    ConfigError,
    DatasetError,
    GrmError,
    InputError,
    ParityError,
)
from grm.runtime.params import ModelMetadata, TrackerParams
from grm.runtime.tracker import StageTimes, Tracker, TrackResult
from grm.runtime.version import __version__

__all__ = [
    "ArtifactMismatchError",
    "BackendUnavailableError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "GrmError",
    "InputError",
    "ModelMetadata",
    "ParityError",
    "StageTimes",
    "TrackResult",
    "Tracker",
    "TrackerParams",
    "__version__",
    "open_model",
]
