"""zooserve.cpu.isa_level: the level that picks onnxruntime's kernels, from the CPU the process sees."""

from __future__ import annotations

import pytest

from training.export import isa_check
from zooserve import cpu

# numpy's probe and /proc/cpuinfo's flags for CPUs of each kind (the features isa_level reads).
AVX2 = {"AVX2": True, "FMA3": True, "F16C": True}
NEWER = {"GFNI": True, "VAES": True, "VPCLMULQDQ": True}
ZEN5 = ({**AVX2, **NEWER, "AVX512F": True, "AVX512BW": True, "AVX512VNNI": True},
        {"avx2", "fma", "f16c", "gfni", "vaes", "vpclmulqdq", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni"})
ALDER_LAKE = ({**AVX2, **NEWER}, {"avx2", "fma", "f16c", "gfni", "vaes", "vpclmulqdq", "avx_vnni"})
ZEN3 = ({**AVX2, "VAES": True, "VPCLMULQDQ": True}, {"avx2", "fma", "f16c", "vaes", "vpclmulqdq"})  # no GFNI
# qemu-x86_64 -cpu EPYC-Rome on these hosts: the process's CPUID says Zen 2, /proc/cpuinfo the host's CPU.
ROME_ON_ZEN5 = (AVX2, ZEN5[1])
ROME_ON_ALDER_LAKE = (AVX2, ALDER_LAKE[1])


@pytest.mark.parametrize("probe, flags, level", [(*ZEN5, "avx512-vnni"), (*ALDER_LAKE, "avx-vnni"), (*ZEN3, "avx2"),
                                                 (*ROME_ON_ZEN5, "avx2"), (*ROME_ON_ALDER_LAKE, "avx2")],
                         ids=["zen5", "alder-lake", "zen3", "emulated-rome-on-zen5", "emulated-rome-on-alder-lake"])
def test_the_level_is_the_one_the_process_sees(monkeypatch, probe, flags, level):
    monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu, "_numpy_features", lambda: probe)
    monkeypatch.setattr(cpu, "_cpuinfo_flags", lambda: flags)
    cpu.isa_level.cache_clear()
    try:
        assert cpu.isa_level() == level
    finally:
        cpu.isa_level.cache_clear()


@pytest.mark.skipif(not isa_check.available("avx2"), reason="needs qemu-user on x86-64 (apt-get install qemu-user)")
def test_an_emulated_avx2_process_reports_avx2():
    """Whatever the host: the emulator's CPU is the one the INT8 check relies on (tests/test_int8_isa.py)."""
    assert isa_check.emulated_level("avx2") == "avx2"
