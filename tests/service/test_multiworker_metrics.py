"""With two uvicorn workers, /metrics adds up over both processes: a request counted by one worker shows in
a scrape answered by the other, and gauges report both workers' models. Connections opened together are
spread over both workers (service.workers: a socket of their own each)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import uvicorn
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(__file__))
import serve_fixture as sf  # noqa: E402

from benchmarks.peers import proc_cpu  # noqa: E402
from service import batched_metrics, workers  # noqa: E402
from tests.service.conftest import RepoWriter, images, infer_json  # noqa: E402

REQUESTS = 24


def post(port: int, path: str, body: dict) -> int:
    # A new connection per request, so the kernel spreads them over both workers' accept queues.
    conn = http.client.HTTPConnection(sf.HOST, port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def scrape(port: int) -> dict:
    status, text = sf.http_get(port, "/metrics")
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def requests_for(sample: dict, model: str) -> float:
    return sum(v for (name, labels), v in sample.items()
               if name == "zooserve_requests_total" and dict(labels).get("model") == model
               and dict(labels).get("code") == "200")


def both_ready(prom: str) -> None:
    """Wait until both workers have loaded the model (each sets its readiness gauge in its own file)."""
    deadline = time.monotonic() + 60
    while len([f for f in os.listdir(prom) if f.startswith("gauge_livemin_")]) < 2:
        assert time.monotonic() < deadline, os.listdir(prom)
        time.sleep(0.05)


def two_workers(tmp_path) -> tuple[RepoWriter, dict]:
    repo = RepoWriter(tmp_path / "models").add("lin", 1)
    env = {"ZOOSERVE_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"])
    return repo, env


def listening_sockets(port: int) -> int:
    """How many TCP sockets listen on 127.0.0.1:port (Linux's /proc/net/tcp: state 0A is LISTEN)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1] == f"0100007F:{port:04X}" and line.split()[3] == "0A")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_each_worker_listens_on_its_own_socket_and_both_take_connections(tmp_path):
    """Each worker has a listening socket of its own (service.workers), so the kernel spreads connections over
    both. With one socket shared by both (uvicorn's own --workers), the worker that woke first accepted nearly
    all of a burst (64 of 64 connections on one worker, seen with wrk -c64 on an AMD Zen 5). 64 keep-alive
    connections begun together, one request on each: both workers answer some."""
    repo, env = two_workers(tmp_path)
    prom = env["PROMETHEUS_MULTIPROC_DIR"]
    with sf.running_server(repo.root, workdir=tmp_path / "work", env=env) as server:
        both_ready(prom)
        # A worker listens once its start-up (the models' loading, which sets the gauge above) is over.
        deadline = time.monotonic() + 30
        while listening_sockets(server.port) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listening_sockets(server.port) == 2
        body = json.dumps(infer_json(images(1))).encode()
        request = (f"POST /v2/models/lin/infer HTTP/1.1\r\nHost: {sf.HOST}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        # Every connection begun before any is used: the 64 handshakes land in the listen queue together.
        socks = [socket.socket() for _ in range(64)]
        for s in socks:
            s.setblocking(False)
            s.connect_ex((sf.HOST, server.port))
        statuses = []
        for s in socks:
            s.setblocking(True)
            s.settimeout(10)
            s.sendall(request)
        for s in socks:
            with s, s.makefile("rb") as f:
                statuses.append(int(f.readline().split()[1]))
    assert statuses == [200] * 64
    # Each worker counts in its own file: the requests each one answered.
    per_worker = [sum(s.value for m in MultiProcessCollector.merge([str(f)], accumulate=True)
                      for s in m.samples if s.name == "zooserve_requests_total" and s.labels.get("model") == "lin")
                  for f in Path(prom).glob("counter_*.db")]
    assert sorted(per_worker)[0] >= 8 and sum(per_worker) == 64, per_worker  # even odds: P(< 8 of 64) ~ 1e-10


def test_two_workers_report_one_sum(tmp_path):
    repo, env = two_workers(tmp_path)
    prom = env["PROMETHEUS_MULTIPROC_DIR"]
    with sf.running_server(repo.root, workdir=tmp_path / "work", env=env) as server:
        # /v2/health/ready answers from whichever worker is up first; wait until both have loaded the model.
        both_ready(prom)
        body = infer_json(images(1))
        # Concurrent connections, so that both workers accept some of them. Which worker accepts a connection
        # is the kernel's choice: send rounds until both have counted requests (each in its own file).
        sent, statuses = 0, []
        with ThreadPoolExecutor(8) as pool:
            while sent < REQUESTS or len([n for n in os.listdir(prom) if n.startswith("counter_")]) < 2:
                assert sent < 50 * REQUESTS, f"one worker took all {sent} connections: {os.listdir(prom)}"
                statuses += pool.map(lambda _: post(server.port, "/v2/models/lin/infer", body), range(REQUESTS))
                sent += REQUESTS
        assert statuses == [200] * sent
        pids = set(os.listdir(prom))
        # Several scrapes land on either worker; every one of them must see all the requests, once each worker
        # has flushed its last ones to its file (service.batched_metrics).
        time.sleep(3 * batched_metrics.FLUSH_S)
        seen = [requests_for(scrape(server.port), "lin") for _ in range(6)]
        ready = scrape(server.port)
    assert seen == [sent] * 6, seen
    # Both workers counted requests in their own files, so every scrape above summed over two processes.
    assert len([name for name in pids if name.startswith("counter_")]) == 2, pids
    # Readiness is the lowest over live workers: both loaded the model.
    assert ready[("zooserve_model_ready", (("model", "lin"), ("version", "1")))] == 1


def test_a_port_held_by_another_program_stops_the_start_with_uvicorns_code(capfd):
    with socket.socket() as held:
        held.bind((sf.HOST, 0))
        held.listen()
        port = held.getsockname()[1]
        config = uvicorn.Config("service.app:factory", factory=True, host=sf.HOST, port=port, workers=2)
        with pytest.raises(SystemExit) as stopped:
            workers.run(config)
    assert stopped.value.code == 3  # uvicorn's STARTUP_FAILURE
    assert f"cannot listen on {sf.HOST}:{port}" in capfd.readouterr().err  # uvicorn's handler, on stderr


def test_a_port_shared_by_another_servers_workers_stops_the_start(tmp_path):
    """Workers listen with SO_REUSEPORT, so the port's holder may have set it too: another zooserve's workers,
    or workers whose supervisor was killed. A second server must not join their group and silently take part
    of their traffic; it stops as it does for any held port."""
    repo = RepoWriter(tmp_path / "models").add("lin", 1)
    with workers.reuse_port_socket(sf.HOST, 0) as held:
        held.listen()
        port = held.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "--repository", str(repo.root), "--host",
                                 sf.HOST, "--port", str(port), "--workers", "2"], cwd=tmp_path,
                                env=sf.clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # it started: stop it and its workers, then fail
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    assert proc.returncode == 3, out.decode()[-2000:]  # uvicorn's STARTUP_FAILURE
    assert f"cannot listen on {sf.HOST}:{port}" in out.decode()


def spawned_workers(supervisor: int) -> list[int]:
    """The supervisor's worker processes (multiprocessing's spawn children)."""
    return [p for p in proc_cpu.tree(supervisor)[1:] if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]


def alive(pid: int) -> bool:
    fields = proc_cpu.stat_fields(f"/proc/{pid}/stat")
    return fields is not None and fields[0] != "Z"  # a zombie has exited


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_workers_end_when_their_supervisor_is_killed(tmp_path):
    """A supervisor killed outright (SIGKILL, the OOM killer) cannot stop its workers. Left running, they would
    keep the port and answer with code that is no longer meant to run. Each worker asks the kernel for SIGTERM
    when its parent dies, and ends."""
    repo, env = two_workers(tmp_path)
    with sf.running_server(repo.root, workdir=tmp_path / "work", env=env) as server:
        both_ready(env["PROMETHEUS_MULTIPROC_DIR"])
        spawned = spawned_workers(server.proc.pid)
        assert len(spawned) == 2, spawned
        server.proc.kill()
        server.proc.wait(5)
        deadline = time.monotonic() + 30
        try:
            while any(alive(p) for p in spawned) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not any(alive(p) for p in spawned)
            assert listening_sockets(server.port) == 0
        finally:
            for p in spawned:
                if alive(p):
                    os.kill(p, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_a_dead_workers_live_gauges_leave_the_metrics(tmp_path):
    """A worker that dies (killed, out of memory) leaves its gauge files behind. In the live modes (requests in
    flight, sequences generating, readiness) prometheus_client adds them up until it is told the process is
    dead, so /metrics would report a dead worker's last requests in flight for ever. The supervisor tells it
    when it reaps the worker, and starts another."""
    repo, env = two_workers(tmp_path)
    prom = env["PROMETHEUS_MULTIPROC_DIR"]

    def live_files(pid: int) -> list[str]:
        return [f for f in os.listdir(prom) if f.startswith("gauge_live") and f.endswith(f"_{pid}.db")]

    with sf.running_server(repo.root, workdir=tmp_path / "work", env=env) as server:
        both_ready(prom)
        victim = spawned_workers(server.proc.pid)[0]
        assert live_files(victim)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while live_files(victim) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not live_files(victim)
        both_ready(prom)  # the supervisor started another worker, which loaded the model
        assert post(server.port, "/v2/models/lin/infer", infer_json(images(1))) == 200
