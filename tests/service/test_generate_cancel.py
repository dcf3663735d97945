"""A client that disconnects mid-stream frees its generation slot within one step, over a real socket:
uvicorn (in a thread of this process, on 127.0.0.1) so that the test can watch the scheduler's steps."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
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


def test_disconnect_mid_stream_frees_the_slot_within_one_step(tmp_path, isolated_settings):
    (tmp_path / MODEL).symlink_to(ROOT / "models" / MODEL)
    app = create_app(settings_for(tmp_path))
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=free_port(), log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 60)
        sched = app.state.repository.get(MODEL).scheduler
        sizes, at_cancel, real_step, real_cancel = [], [], sched.stepper.step, sched.cancel

        def slow_step(states, pending):  # 5 ms a step, so the streams are still running when the client leaves
            sizes.append(len(states))
            time.sleep(0.005)
            return real_step(states, pending)

        def cancel(seq):
            at_cancel.append(len(sizes))  # steps begun so far (one may be under way)
            real_cancel(seq)

        sched.stepper.step, sched.cancel = slow_step, cancel
        base = f"http://{HOST}:{server.config.port}"
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
        # The step under way at the disconnect (number k) may still carry the row; none after it does.
        assert all(s == 1 for s in sizes[k:]), (k, sizes)
        other.join(30)
        assert background["r"].status_code == 200
        assert background["r"].json()["details"]["generated_tokens"] == 300
        wait_for(lambda: sched.active == 0)
    finally:
        server.should_exit = True
        thread.join(30)
