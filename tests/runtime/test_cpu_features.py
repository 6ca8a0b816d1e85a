"""CPU instruction sets read from /proc/cpuinfo text, and the fallback where there is none."""

from __future__ import annotations

from pathlib import Path

from grm.runtime.cpu_features import cpu_features, parse_cpuinfo

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9454
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni
processor\t: 1
model name\t: other core
flags\t\t: fpu
"""
HASWELL = "model name\t: Intel Xeon E5-2680 v3\nflags\t\t: fpu sse avx avx2 fma\n"
SAPPHIRE = "model name\t: Intel Xeon 8480\nflags\t\t: avx2 avx512f avx_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 asimddp\n"


def test_flags_of_the_first_processor() -> None:
    zen4 = parse_cpuinfo(ZEN4)
    assert zen4.model == "AMD EPYC 9454"
    assert dict(zen4.found) == {"AVX2": True, "AVX-512": True, "VNNI": True, "AMX": False, "bf16": True}
    assert zen4.summary() == "AMD EPYC 9454: AVX2 yes, AVX-512 yes, VNNI yes, AMX no, bf16 yes"
    assert dict(parse_cpuinfo(HASWELL).found) == {"AVX2": True, "AVX-512": False, "VNNI": False, "AMX": False,
                                                  "bf16": False}  # fmt: skip
    assert all(parse_cpuinfo(SAPPHIRE).found.values())  # AVX-VNNI counts as VNNI, AMX tiles as AMX


def test_arm_has_none_and_no_cpuinfo_means_unknown(tmp_path: Path) -> None:
    assert not any(parse_cpuinfo(ARM).found.values())
    unknown = cpu_features(tmp_path / "no-cpuinfo")
    assert set(unknown.found.values()) == {None}
    assert "AVX2 unknown" in unknown.summary() and unknown.to_dict()["VNNI"] is None
