"""Graceful shutdown with a deadline, on a real server process: after SIGTERM readiness is 503 at once,
requests that still arrive are served for the drain window, a stream in flight finishes, and the process
exits once the drain window and the in-flight work are over."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from pathlib import Path

from tests.service import serve_fixture as sf

ROOT = Path(__file__).resolve().parents[2]
DRAIN_S, GRACE_S = 2.0, 10.0


def post(port: int, path: str, doc: dict, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(sf.HOST, port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(doc), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_sigterm_turns_readiness_off_serves_the_drain_window_then_exits(tmp_path):
    repo = tmp_path / "models"
    repo.mkdir()
    for model in ("fashion-lenet", "island-gru"):
        (repo / model).symlink_to(ROOT / "models" / model)
    image = {"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}]}
    env = {"ZOOSERVE_SHUTDOWN_DRAIN_S": str(DRAIN_S), "ZOOSERVE_SHUTDOWN_GRACE_S": str(GRACE_S)}
    with sf.running_server(repo, workdir=tmp_path / "work", env=env, ready_timeout=60) as server:
        stream = {}

        def generate():  # a stream that is still running when the drain window ends
            stream["answer"] = post(server.port, "/v2/models/island-gru/generate",
                                    {"text_input": "The engineer", "parameters": {"max_tokens": 512, "seed": 1}})

        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        ready = sf.http_get(server.port, "/v2/health/ready")[0]
        during = [post(server.port, "/v2/models/fashion-lenet/infer", image)[0] for _ in range(3)]
        time.sleep(DRAIN_S * 0.5)
        worker = threading.Thread(target=generate)
        worker.start()
        late = post(server.port, "/v2/models/fashion-lenet/infer", image)[0]
        server.proc.wait(DRAIN_S + GRACE_S + 10)
        exited = time.monotonic() - t0
        worker.join(5)
        log = server.log()

    assert ready == 503
    assert during == [200, 200, 200] and late == 200, log
    assert stream["answer"][0] == 200 and json.loads(stream["answer"][1])["details"]["generated_tokens"] > 0, log
    assert DRAIN_S <= exited < DRAIN_S + GRACE_S, (exited, log)
    # uvicorn re-raises the SIGTERM it handled once it has shut down, so the exit status names the signal
    assert server.proc.returncode in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log
