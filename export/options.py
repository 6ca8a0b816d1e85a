"""Export options that need no PyTorch: the opset range and the ``--batch`` parser.

Kept apart from :mod:`grm.export.to_onnx` so that ``grm-export`` can parse its command line and say what it is
doing before the slow PyTorch import starts.
"""

from __future__ import annotations

from grm.runtime.errors import ConfigError

DEFAULT_OPSET = 18
MIN_OPSET = 18  # the dynamo exporter's ONNX functions start at 18 (it silently returns 18 when asked for 17)
MAX_OPSET = 21


def check_opset(opset: int) -> int:
    """Validate a requested opset: 18..21 (the exporter's floor is 18; newer ones are untested with TensorRT)."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"opset {opset} is not supported; choose {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})")
    return opset


def parse_batch(text: str | int) -> int:
    """``--batch``: a whole number N >= 1, or ``dynamic`` (returned as 0, the metadata's dynamic batch).

    Raises:
        ConfigError: anything else.
    """
    value = str(text).strip().lower()
    if value == "dynamic":
        return 0
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--batch {text!r} must be a whole number >= 1 or 'dynamic'")
    return int(value)
