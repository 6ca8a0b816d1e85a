"""grm-bench speed names the CPU's instruction sets next to its figures (console table and RESULTS.md section)."""

from __future__ import annotations

from dataclasses import asdict

from grm.benchmarks.speed import EngineSpeed, format_speed_table, results_markdown
from grm.runtime.cpu_features import cpu_features


def _report() -> dict:
    frame = {"p50": 10.0, "p90": 11.0, "p99": 12.0}
    stages = {"preprocess": 1.0, "inference": 8.0, "postprocess": 1.0}
    engine = EngineSpeed(label="a.onnx", backend="onnxruntime[CPUExecutionProvider]", threshold=0.0, frames=9,
                         track_seconds=0.09, fps=100.0, init_ms=5.0, latency_ms={"frame": frame},
                         stage_mean_ms=stages, peak_rss_mb=100.0)  # fmt: skip
    machine = {"platform": "Linux", "processor": "x86_64", "cpus": 2, "python": "3.11",
               "cpu_features": "Some CPU: AVX2 yes, AVX-512 no, VNNI no, AMX no, bf16 no"}  # fmt: skip
    return {"fps_definition": "frames / time", "warmup_frames": 1, "clip": {"name": "c", "frames": 10},
            "machine": machine, "measured": "now", "engines": [asdict(engine)], "ratios": []}  # fmt: skip


def test_speed_outputs_carry_the_cpu_features() -> None:
    report = _report()
    line = "CPU features: Some CPU: AVX2 yes, AVX-512 no, VNNI no, AMX no, bf16 no"
    assert format_speed_table(report).splitlines()[1] == line
    assert line + "." in results_markdown(report)
    del report["machine"]["cpu_features"]  # reports written before the field existed
    assert "CPU features" not in format_speed_table(report)
    assert cpu_features().summary().count(",") == 4  # this machine's line has all five sets
