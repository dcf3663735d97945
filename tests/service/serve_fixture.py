"""Helpers for tests that drive the real server over HTTP: a tiny model repository built by the training
pipeline's --dry-run on fake Fashion-MNIST, a free local port, and `python -m service.cli` as a subprocess
that is always stopped again.

Only ever binds and connects to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
FILES = {  # Fashion-MNIST's four file names
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def free_port() -> int:
    """A TCP port that was free a moment ago (bind to port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def write_fake_fashion(folder: Path, n_train: int = 700, n_test: int = 100, *, seed: int = 0) -> Path:
    """The four idx.gz files with random but class-dependent uint8 images (a bright bar per class)."""
    from training.data.idx import write_idx

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            col = 2 + 2 * int(label)
            images[i, 4:24, col:col + 3] = rng.integers(200, 256, size=(20, 3), dtype=np.uint8)
        return images, labels

    train_x, train_y = split(n_train)
    test_x, test_y = split(n_test)
    for key, arr in (("train_images", train_x), ("train_labels", train_y), ("test_images", test_x),
                     ("test_labels", test_y)):
        write_idx(folder / FILES[key], arr, compress=True)
    return folder


def build_repository(base: Path, recipes: tuple[str, ...] = ("fashion-lenet",), *, n_train: int = 700,
                     n_test: int = 100) -> Path:
    """Run `training.train --recipe R --dry-run` on fake data for each recipe; return the repository folder."""
    import torch

    from training import train

    torch.set_num_threads(1)
    base = Path(base)
    data = write_fake_fashion(base / "data", n_train, n_test)
    out, runs = base / "models", base / "runs"
    for recipe in recipes:
        rc = train.main(["--recipe", recipe, "--dry-run", "--data", str(data), "--out", str(out),
                         "--runs", str(runs), "--no-progress", "--device", "cpu"])
        if rc != 0:
            raise RuntimeError(f"dry run of {recipe} exited with {rc}")
    return out


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:  # tritonclient wants host:port without a scheme
        return f"{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a server subprocess: no inherited ZOOSERVE_* settings, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOOSERVE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra or {})
    return env


def wait_ready(server: Server, timeout: float) -> float:
    """Poll /v2/health/ready until 200; return the seconds it took. Raises if the process dies or time runs out."""
    t0 = time.monotonic()
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode} before it was ready:\n{server.log()}")
        try:
            status, _ = http_get(server.port, "/v2/health/ready", timeout=1.0)
            if status == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"server not ready after {timeout:.0f}s:\n{server.log()}")
        time.sleep(0.02)


def stop(server: Server, timeout: float = 15.0) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it does not exit in time."""
    proc = server.proc
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextmanager
def running_server(repository: Path, *, workdir: Path, env: dict[str, str] | None = None,
                   ready_timeout: float = 60.0):
    """Start `python -m service.cli --repository REPO --host 127.0.0.1 --port FREE` and yield a `Server` once
    /v2/health/ready says 200. The process is always stopped on exit, even when start-up fails.

    `workdir` is the process's cwd (so no stray `.env` file is read); the repo is put on PYTHONPATH.
    """
    port = free_port()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"server-{port}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "--repository", str(repository), "--host", HOST, "--port", str(port)],
            cwd=workdir, env=clean_env(env), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(proc, port, log_path)
    try:
        wait_ready(server, ready_timeout)
        yield server
    finally:
        stop(server)
