"""A client that disconnects mid-stream, or before a non-stream answer is ready, frees its generation slot
within one graph call (a step, or a call of the steps graph), over a real socket: uvicorn (in a thread of this process, on 127.0.0.1) so that the test
can watch the scheduler's steps."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from service.app import create_app
from tests.service.conftest import settings_for
from tests.service.serve_fixture import HOST, free_port

ROOT = Path(__file__).resolve().parents[2]
MODEL = "island-lstm"


def wait_for(check, timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.002)


@contextmanager
def serving(tmp_path):
    """uvicorn on a free local port with island-lstm -> (base url, its scheduler)."""
    (tmp_path / MODEL).symlink_to(ROOT / "models" / MODEL)
    app = create_app(settings_for(tmp_path))
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=free_port(), log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 60)
        yield f"http://{HOST}:{server.config.port}", app.state.repository.get(MODEL).scheduler
    finally:
        server.should_exit = True
        thread.join(30)


def slowed(sched):
    """5 ms a graph call (one step, or several tokens of the steps graph), so that a sequence is still running
    when its client leaves. -> (the batch size of each call begun, the number of calls begun at each cancel,
    the cancelled sequences)."""
    sizes, at_cancel, gone, real_step, real_steps, real_cancel = [], [], [], sched.stepper.step, \
        sched.stepper.steps, sched.cancel

    def slow_step(states, pending):
        sizes.append(len(states))
        time.sleep(0.005)
        return real_step(states, pending)

    def slow_steps(states, pending, *sampling):
        sizes.append(len(states))
        time.sleep(0.005)
        return real_steps(states, pending, *sampling)

    def cancel(seq):
        at_cancel.append(len(sizes))  # steps begun so far (one may be under way)
        gone.append(seq)
        real_cancel(seq)

    sched.stepper.step, sched.stepper.steps, sched.cancel = slow_step, slow_steps, cancel
    return sizes, at_cancel, gone


def test_disconnect_mid_stream_frees_the_slot_within_one_step(tmp_path, isolated_settings):
    with serving(tmp_path) as (base, sched):
        sizes, at_cancel, _ = slowed(sched)
        background = {}

        def steady():  # a second sequence that keeps the scheduler stepping throughout
            background["r"] = httpx.post(f"{base}/v2/models/{MODEL}/generate", timeout=30,
                                         json={"text_input": "Pencroft", "parameters": {"max_tokens": 300}})

        other = threading.Thread(target=steady)
        other.start()
        wait_for(lambda: sched.active == 1)
        with httpx.Client(timeout=30) as client:
            with client.stream("POST", f"{base}/v2/models/{MODEL}/generate_stream",
                               json={"text_input": "The engineer", "parameters": {"max_tokens": 500}}) as resp:
                assert resp.status_code == 200
                lines = resp.iter_lines()
                got = [line for _, line in zip(range(6), lines) if line.startswith("data: ")]
                assert len(got) == 3 and sched.active == 2
        # Leaving the block closed the connection mid-stream.
        wait_for(lambda: bool(at_cancel))
        wait_for(lambda: sched.active == 1)
        k = at_cancel[0]
        wait_for(lambda: len(sizes) > k + 3)  # a few more steps of the steady sequence
        assert sizes[k - 1] == 2  # the stream was still being stepped, with the steady one, when it left
        # One call after the disconnect may still carry the row: the one under way, or the one the worker had
        # formed, having looked for cancellations just before the cancel, and not yet begun (so not counted
        # in k; seen once in CI). None after it does.
        assert all(s == 1 for s in sizes[k + 1:]), (k, sizes)
        other.join(30)
        assert background["r"].status_code == 200
        assert background["r"].json()["details"]["generated_tokens"] == 300
        wait_for(lambda: sched.active == 0)


@pytest.mark.parametrize("path, body", [
    (f"/v2/models/{MODEL}/generate", {"text_input": "The engineer", "parameters": {"max_tokens": 500}}),
    ("/v1/completions", {"model": MODEL, "prompt": "The engineer", "max_tokens": 500}),
])
def test_a_non_stream_client_that_disconnects_frees_the_slot_within_one_step(tmp_path, isolated_settings, path, body):
    with serving(tmp_path) as (base, sched):
        sizes, at_cancel, gone = slowed(sched)
        data = json.dumps(body).encode()
        with socket.create_connection((HOST, int(base.rsplit(":", 1)[1])), timeout=30) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
            wait_for(lambda: len(sizes) >= 5)  # generating, the answer 500 tokens away
            assert sched.active == 1 and not at_cancel
        # The socket is closed: nobody will read the answer.
        wait_for(lambda: bool(at_cancel))
        wait_for(lambda: sched.active == 0)
        k = at_cancel[0]
        time.sleep(0.05)  # room for ten more steps, were the sequence still generating
        assert len(sizes) <= k + 1, (k, sizes)  # at most the step under way at the disconnect
        assert gone[0].cancelled and not gone[0].done and gone[0].generated < 500  # it never reached max_tokens
