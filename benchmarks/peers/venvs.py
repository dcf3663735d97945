"""Throwaway virtualenvs for the peers, never the project's: `python -m venv` + `pip install` of the pinned
peer with the SAME onnxruntime and numpy versions as zooserve's environment, so only the serving layer differs.

A venv lives in <dir>/<peer>-<version> (default ~/.cache/zooserve-bench-peers) and is reused while its
marker file holds the same spec; a changed pin or onnxruntime upgrade rebuilds it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

PINS = {"mlserver": "mlserver==1.7.1", "litserve": "litserve==0.2.19"}
DEFAULT_DIR = Path.home() / ".cache" / "zooserve-bench-peers"
MARKER = ".zooserve-peer-spec"
REPORTED = ("onnxruntime", "numpy", "fastapi", "uvicorn", "pydantic")  # printed per peer in the report


class VenvError(RuntimeError):
    pass


def spec(peer: str) -> list[str]:
    """The pip requirements of `peer`'s venv: its pin, and zooserve's own onnxruntime and numpy."""
    return [PINS[peer], *(f"{p}=={metadata.version(p)}" for p in ("onnxruntime", "numpy"))]


def ensure(peer: str, folder: Path = DEFAULT_DIR, log=print) -> Path:
    """The Python of `peer`'s venv, created (or rebuilt) if its marker does not hold today's spec."""
    requirements = spec(peer)
    home = folder / PINS[peer].replace("==", "-")
    python, marker = home / "bin" / "python", home / MARKER
    wanted = json.dumps({"python": sys.version.split()[0], "requirements": requirements})
    if python.is_file() and marker.is_file() and marker.read_text() == wanted:
        return python
    log(f"creating {home}: pip install {' '.join(requirements)} (a minute or two, once)")
    shutil.rmtree(home, ignore_errors=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
                           *requirements], capture_output=True, text=True)
    if done.returncode:
        shutil.rmtree(home, ignore_errors=True)
        raise VenvError(f"pip could not install {' '.join(requirements)} for {peer} (is PyPI reachable?):\n"
                        f"{done.stdout[-2000:]}{done.stderr[-3000:]}")
    marker.write_text(wanted)
    return python


def versions(python: Path, peer: str) -> dict[str, str]:
    """The versions installed in a peer's venv, read by that venv's Python."""
    names = [peer, *REPORTED]
    code = ("import json, importlib.metadata as m; "
            f"print(json.dumps({{n: m.version(n) for n in {names!r}}}))")
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                                     check=True).stdout)
