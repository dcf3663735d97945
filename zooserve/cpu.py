"""Which CPU this process runs on, in the terms that decide onnxruntime's kernels (and so its speed).

onnxruntime's MLAS picks its integer and float kernels from the instruction sets the CPU reports: VNNI or AMX
for INT8 dot products, AVX-512 or AVX2 otherwise. Every speed figure and INT8 figure the project publishes
names the level it was measured at (`isa_level()`), and the server logs it at start-up.

The flags come from numpy's CPUID probe (`__cpu_features__`), so they describe the CPU the process sees, an
emulated one included (`qemu-x86_64 -cpu EPYC-Rome`, as `tests/test_int8_isa.py` uses); AVX-VNNI and AMX,
which numpy does not probe, come from /proc/cpuinfo, which describes the host's CPU even to an emulated
process. So those two are read only when /proc/cpuinfo agrees with numpy's probe on the features both report
(`_host_flags`): under `qemu-x86_64 -cpu EPYC-Rome` on an AMD Zen 5 host, /proc/cpuinfo lists avx_vnni and
avx512f, numpy sees neither, and the process is an AVX2 one.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path


def _numpy_features() -> dict[str, bool]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core._multiarray_umath import __cpu_features__
    return dict(__cpu_features__)


def _cpuinfo_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# numpy's name for a feature -> /proc/cpuinfo's: features both report, compared by _host_flags. GFNI, VAES and
# VPCLMULQDQ come with every CPU that has AVX-VNNI (Intel from Alder Lake, AMD from Zen 4) and not with the
# emulated Zen 2, so even an AVX-VNNI host without AVX-512 disagrees with an emulated process.
_BOTH = {"AVX2": "avx2", "FMA3": "fma", "F16C": "f16c", "AVX512F": "avx512f", "AVX512BW": "avx512bw",
         "AVX512VNNI": "avx512_vnni", "GFNI": "gfni", "VAES": "vaes", "VPCLMULQDQ": "vpclmulqdq"}


def _host_flags(f: dict[str, bool]) -> set[str]:
    """/proc/cpuinfo's flags if they describe the CPU this process sees (they agree with numpy's probe `f` on
    every feature both report), else none: an emulator presents another CPU than the host's."""
    flags = _cpuinfo_flags()
    if any(bool(f.get(name)) != (flag in flags) for name, flag in _BOTH.items()):
        return set()
    return flags


@lru_cache(maxsize=1)
def isa_level() -> str:
    """The highest level that changes onnxruntime's INT8 kernels: "amx", "avx512-vnni", "avx-vnni",
    "avx512" (no VNNI), "avx2", "sse4.1", or the machine name on other architectures ("aarch64+dotprod")."""
    machine = platform.machine().lower()
    f = _numpy_features()
    if machine in ("x86_64", "amd64", "i686", "x86"):
        flags = _host_flags(f)
        if f.get("AVX512_SPR") and "amx_int8" in flags:
            return "amx"
        if f.get("AVX512VNNI"):
            return "avx512-vnni"
        if f.get("AVX2") and "avx_vnni" in flags and not f.get("AVX512F"):
            return "avx-vnni"
        if f.get("AVX512BW"):
            return "avx512"
        if f.get("AVX2"):
            return "avx2"
        return "sse4.1" if f.get("SSE41") else "sse2"
    return f"{machine}+dotprod" if f.get("ASIMDDP") else machine


def cpu_name() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it (the platform's name elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    """One line for logs and report footers, e.g. "AMD EPYC (avx512-vnni)"."""
    return f"{cpu_name()} ({isa_level()})"
