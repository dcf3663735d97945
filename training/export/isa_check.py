"""Run a graph over a split on an emulated CPU, to show its figures do not depend on the CPU's level.

onnxruntime chooses its INT8 kernels by CPU level, and the levels differ in arithmetic: without VNNI, U8S8
dot products go through saturating int16 sums (see `quantize.py`). A machine of the other family is not
always at hand, so this runs the graph in a child process under `qemu-x86_64 -cpu EPYC-Rome` (user-mode
emulation of an AMD Zen 2: AVX2, no AVX-512, no VNNI), which executes onnxruntime's AVX2 kernels as that CPU
would. The check is trustworthy for exactly this purpose: the INT8 graphs shipped before the format change
gave 0.9101 for fashion-lenet-int8 here, the figure a real AVX2-only AMD EPYC gave, against 0.9146 on VNNI.

Emulation is slow (20-50x), so callers pass a slice of the split, or accept minutes for a whole one.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from zooserve import cpu
from training.export import onnx_eval

ROOT = Path(__file__).resolve().parents[2]
# isa -> the emulator command that presents such a CPU to the process (its model name goes on the card).
EMULATORS = {"avx2": ["qemu-x86_64", "-cpu", "EPYC-Rome"]}
EMULATED_CPU = {"avx2": "AMD EPYC-Rome (Zen 2), emulated"}


class EmulatorUnavailable(RuntimeError):
    """No emulator for the asked CPU level on this machine."""


def measured_on(isa: str | None = None) -> dict:
    """The card's `measured_on` for this process (isa None) or for the emulated level `isa`."""
    if isa is None:
        return {"isa": cpu.isa_level(), "cpu": cpu.cpu_name(), "onnxruntime": ort.__version__}
    return {"isa": isa, "cpu": EMULATED_CPU[isa], "onnxruntime": ort.__version__, "emulator": " ".join(EMULATORS[isa])}


def add_argument(parser) -> None:
    """The training scripts' `--emulate LEVEL` flag (repeatable)."""
    parser.add_argument("--emulate", action="append", default=[], choices=sorted(EMULATORS),
                        help="with --int8: also measure the INT8 graph's test split on this emulated CPU level "
                             "(needs qemu-user; minutes)")


def available(isa: str = "avx2") -> bool:
    return (isa in EMULATORS and platform.machine().lower() in ("x86_64", "amd64")
            and shutil.which(EMULATORS[isa][0]) is not None)


def _env() -> dict[str, str]:
    """The environment of an emulated child: this checkout first on its path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def emulated_level(isa: str = "avx2") -> str:
    """The CPU level (zooserve.cpu.isa_level) that a process under the `isa` emulator reports."""
    probe = "from zooserve import cpu; print(cpu.isa_level())"
    # qemu warns on stderr about every host CPU feature its TCG cannot emulate; only stdout is read.
    return subprocess.run([*EMULATORS[isa], sys.executable, "-c", probe], capture_output=True, text=True,
                          env=_env(), timeout=120, check=True).stdout.strip()


def emulated_outputs(model_dir: Path, inputs: dict[str, np.ndarray], isa: str = "avx2",
                     timeout_s: float = 3600) -> np.ndarray:
    """`onnx_eval.outputs(model_dir, inputs)` computed on an emulated `isa` CPU (one onnxruntime thread)."""
    if not available(isa):
        raise EmulatorUnavailable(f"cannot emulate {isa}: needs {EMULATORS.get(isa, ['?'])[0]} on an x86-64 "
                                  "machine (Debian: apt-get install qemu-user)")
    seen = emulated_level(isa)
    if seen != isa:
        raise EmulatorUnavailable(f"the emulated process reports CPU level {seen!r}, not {isa!r}")
    with tempfile.TemporaryDirectory(prefix="isa-check-") as tmp:
        src, dst = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npy"
        np.savez(src, **inputs)
        run = subprocess.run([*EMULATORS[isa], sys.executable, "-m", "training.export.onnx_eval", str(model_dir),
                              str(src), str(dst)], capture_output=True, text=True, env=_env(), timeout=timeout_s)
        if run.returncode != 0:
            noise = "TCG doesn't support requested feature"
            err = "\n".join(line for line in run.stderr.splitlines() if noise not in line)
            raise RuntimeError(f"the emulated evaluation of {model_dir} failed:\n{err[-2000:]}")
        return np.load(dst)


def compare(model_dir: Path, inputs: dict[str, np.ndarray], native: np.ndarray, figures, isa: str = "avx2") -> dict:
    """The card's `isa_checks` entry: `figures(outputs)` (a metrics dict) on the emulated CPU, and the
    largest difference from `native`, the same outputs in the card's own run."""
    emulated = emulated_outputs(model_dir, inputs, isa)
    got = figures(emulated)
    return {"measured_on": measured_on(isa), "examples": got["examples"],
            **{k: got[k] for k in ("accuracy", "cross_entropy") if got.get(k) is not None},
            "max_abs_diff": float(np.abs(emulated.astype(np.float64) - native).max())}


def checks(model_dir: Path, inputs: dict[str, np.ndarray], figures, levels: list[str]) -> list[dict]:
    """`compare` on each emulated level in `levels`, against this machine's run on one thread (as the child's)."""
    if not levels:
        return []
    native = onnx_eval.outputs(model_dir, inputs, threads=1)
    return [compare(model_dir, inputs, native, figures, isa) for isa in levels]
