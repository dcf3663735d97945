"""How each target is started: one function per target, each returning a running `serve_bench.Process` and
a line that says how it is configured (printed in the report).

  bare      serve_bench.py's parse-only FastAPI endpoint: HTTP + V2 body parsing, no model (the ceiling)
  mlserver  `mlserver start <folder>` with mlserver_runtime.OnnxRuntimeModel, in MLServer's own venv
  litserve  litserve_app.py, in LitServe's own venv
  zooserve  `python -m service.cli`, repository = a temporary copy of the models measured, default settings

All four on 127.0.0.1, one process serving HTTP (MLServer's parallel_workers 0; LitServe one API server
and one inference worker per model; uvicorn's single worker for bare and zooserve), every onnxruntime
session with the options zooserve resolves here (`ort_options`)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from benchmarks import serve_bench as sb
from benchmarks.peers.peer_onnx import ORT_ENV

PEER_SIDE = Path(__file__).resolve().parent  # peer_onnx.py, mlserver_runtime.py, litserve_app.py
HEALTH = {"bare": "/v2/health/ready", "mlserver": "/v2/health/ready", "litserve": "/health",
          "zooserve": "/v2/health/ready"}
# The session config entries serving_session_options may set (passed on to the peers when set).
CONFIG_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning",
               "session.set_denormal_as_zero", "session.dynamic_block_base")


@dataclass
class Model:
    name: str
    onnx: Path
    max_batch_size: int
    max_delay_ms: float


@dataclass
class Setup:
    """What every target is started from."""
    python: str  # the project's interpreter (bare, zooserve)
    peers: dict[str, Path]  # peer -> its venv's python
    models: list[Model]
    repository: Path  # the models measured, copied (zooserve's ZOOSERVE_REPOSITORY)
    ort: dict  # ort_options(): the session options every peer builds
    work: Path  # temporary folder: logs, MLServer's settings
    ready_timeout: float
    peer_batching: bool = True  # False: the peers answer one request per inference (--peer-batching off)

    def batching(self, m: Model) -> tuple[int, float]:
        """A peer's (max batch size, max delay ms) for `m`: zooserve's card values, or (1, 0) when off."""
        return (m.max_batch_size, m.max_delay_ms) if self.peer_batching else (1, 0.0)

    def batching_said(self, size: str, delay: str) -> str:
        return (f"batching on with the card's max_batch_size and max_delay_ms as {delay}" if self.peer_batching
                else f"batching off ({size} 1)")


def ort_options() -> dict:
    """zooserve's session options on this machine, read from its own function at run time, as JSON for
    the peers (peer_onnx.session_options builds them back)."""
    from service.runtime.engine.session import serving_session_options
    from service.settings import Settings

    opts = serving_session_options(Settings(_env_file=sb.ROOT / ".env"))
    config = {}
    for key in CONFIG_KEYS:  # onnxruntime cannot list a SessionOptions' entries: ask for each one
        try:
            config[key] = opts.get_session_config_entry(key)
        except RuntimeError:  # not set
            pass
    return {"intra_op_num_threads": opts.intra_op_num_threads, "inter_op_num_threads": opts.inter_op_num_threads,
            "graph_optimization_level": opts.graph_optimization_level.name, "config": config}


def copy_repository(source: Path, names: list[str], dest: Path) -> list[Model]:
    """Copy the latest version of each model into `dest` (zooserve then loads only these) and read its card."""
    models = []
    for name in names:
        version = max((p for p in (source / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        shutil.copytree(version, dest / name / version.name)
        card = json.loads((version / "model.json").read_text())
        batching = card.get("batching") or {}
        models.append(Model(name, dest / name / version.name / card["artifact"]["file"],
                            batching.get("max_batch_size", 1), batching.get("max_delay_ms", 0.0)))
    return models


def _launch(setup: Setup, name: str, port: int, cmd: list[str], env: dict[str, str]) -> sb.Process:
    proc = sb.Process(cmd, env, port, setup.work, name)
    try:
        proc.wait_ready(HEALTH[name], setup.ready_timeout)
    except Exception:
        proc.stop()
        raise
    return proc


def start_bare(setup: Setup) -> tuple[sb.Process, str]:
    port = sb.free_port()
    cmd = [setup.python, str(Path(sb.__file__)), "--serve-bare", str(port), "--bare-framework", "fastapi"]
    return (_launch(setup, "bare", port, cmd, sb.child_env({})),
            "serve_bench.py's one-route FastAPI app: parses the V2 body with zooserve's parser, answers "
            "the row count; no model")


def _peer_env(setup: Setup) -> dict[str, str]:
    """The peer's environment: its own venv only (PYTHONPATH = the peer-side files), zooserve's ORT options."""
    env = sb.child_env({ORT_ENV: json.dumps(setup.ort), "PYTHONPATH": str(PEER_SIDE)})
    env.pop("VIRTUAL_ENV", None)
    return env


def start_mlserver(setup: Setup) -> tuple[sb.Process, str]:
    port, folder = sb.free_port(), setup.work / "mlserver"
    folder.mkdir(exist_ok=True)
    settings = {"debug": False, "parallel_workers": 0, "host": sb.HOST, "http_port": port,
                "grpc_port": sb.free_port(), "metrics_port": sb.free_port(),
                "metrics_dir": str(folder / ".metrics"), "environments_dir": str(folder / ".envs")}
    (folder / "settings.json").write_text(json.dumps(settings, indent=1))
    for m in setup.models:
        size, delay_ms = setup.batching(m)
        (folder / m.name).mkdir(exist_ok=True)
        (folder / m.name / "model-settings.json").write_text(json.dumps({
            "name": m.name, "implementation": "mlserver_runtime.OnnxRuntimeModel",
            "max_batch_size": size, "max_batch_time": delay_ms / 1000,
            "parameters": {"uri": str(m.onnx)}}, indent=1))
    mlserver = setup.peers["mlserver"].parent / "mlserver"
    proc = _launch(setup, "mlserver", port, [str(mlserver), "start", str(folder)], _peer_env(setup))
    return proc, ("custom runtime (mlserver.MLModel subclass, onnxruntime in one thread per model), "
                  f"parallel_workers 0 (one process), adaptive {setup.batching_said('max_batch_size', 'max_batch_time')}, "
                  "debug off (no access log), metrics on (its default)")


def start_litserve(setup: Setup) -> tuple[sb.Process, str]:
    port = sb.free_port()
    spec = [{"name": m.name, "path": str(m.onnx), **dict(zip(("max_batch_size", "max_delay_ms"), setup.batching(m)))}
            for m in setup.models]
    cmd = [str(setup.peers["litserve"]), str(PEER_SIDE / "litserve_app.py"), str(port), json.dumps(spec)]
    return (_launch(setup, "litserve", port, cmd, _peer_env(setup)),
            "one LitAPI per model (decode -> batch -> predict -> unbatch -> encode), "
            f"{setup.batching_said('max_batch_size', 'batch_timeout')}, accelerator cpu, workers_per_device 1, "
            "num_api_servers 1, fast_queue (ZeroMQ), log level warning")


def start_zooserve(setup: Setup) -> tuple[sb.Process, str]:
    port = sb.free_port()
    cmd = [setup.python, "-m", "service.cli", "--host", sb.HOST, "--port", str(port)]
    return (_launch(setup, "zooserve", port, cmd, sb.child_env({"ZOOSERVE_REPOSITORY": str(setup.repository)})),
            "`python -m service.cli`, default settings (batching from the card)")


STARTERS = {"bare": start_bare, "mlserver": start_mlserver, "litserve": start_litserve, "zooserve": start_zooserve}
