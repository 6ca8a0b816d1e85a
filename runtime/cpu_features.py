"""The CPU instruction sets that decide ONNX Runtime's FP32 and INT8 kernel speed, to label every speed figure.

INT8 against FP32 depends on them: with AVX2 alone, ONNX Runtime's INT8 matrix products (``vpmaddubsw``) ran
1.8x its FP32 rate; with AVX-512 VNNI (``vpdpbusd``) 3.3-4x (calibration/README.md); AMX goes further. Read from
the ``flags`` line of ``/proc/cpuinfo`` on Linux (ARM's ``Features`` line means none of them); elsewhere each
set is reported as unknown, never as absent.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
FEATURES: Mapping[str, tuple[str, ...]] = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "VNNI": ("avx512_vnni", "avx_vnni"),
    "AMX": ("amx_int8", "amx_tile"),
    "bf16": ("avx512_bf16", "amx_bf16"),
}
"""Reported name -> any of these ``/proc/cpuinfo`` flags."""


@dataclass(frozen=True)
class CpuFeatures:
    """CPU model name and each instruction set of :data:`FEATURES` (True, False, or None = unknown)."""

    model: str
    found: Mapping[str, bool | None]

    def summary(self) -> str:
        """One line, e.g. ``AMD EPYC: AVX2 yes, AVX-512 yes, VNNI yes, AMX no, bf16 yes``."""
        marks = {True: "yes", False: "no", None: "unknown"}
        return f"{self.model}: " + ", ".join(f"{name} {marks[v]}" for name, v in self.found.items())

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, **self.found}


def parse_cpuinfo(text: str) -> CpuFeatures:
    """Features from ``/proc/cpuinfo`` text (the first processor's ``flags`` and ``model name`` lines)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    model = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if "flags" not in fields and "Features" not in fields:
        return CpuFeatures(model, dict.fromkeys(FEATURES))
    flags = set(fields.get("flags", "").split())  # ARM lists "Features", none of them x86 sets
    return CpuFeatures(model, {name: any(f in flags for f in names) for name, names in FEATURES.items()})


def cpu_features(cpuinfo: Path = CPUINFO) -> CpuFeatures:
    """This machine's features; every set unknown where ``cpuinfo`` cannot be read (macOS, Windows)."""
    try:
        return parse_cpuinfo(cpuinfo.read_text(errors="replace"))
    except OSError:
        return parse_cpuinfo("")
