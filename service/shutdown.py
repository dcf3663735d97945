"""Graceful shutdown with a deadline.

On SIGTERM, readiness answers 503 at once, but the server keeps accepting and serving requests for
`shutdown_drain_s`: a load balancer or a Kubernetes Service takes a few seconds to notice, and requests it
still sends must not meet a closed port. Then uvicorn stops accepting, lets in-flight requests and streams
finish for up to `shutdown_grace_s` (its `timeout_graceful_shutdown`), runs the lifespan's shutdown
(batchers and schedulers drain) and exits. A second SIGTERM skips what is left of the drain window.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

log = logging.getLogger(__name__)


def delay_sigterm(state, drain_s: float) -> None:
    """Wrap the SIGTERM handler uvicorn installed before it ran the lifespan (this runs in the lifespan's
    start-up): mark `state.draining` (readiness reads it) and hand the signal on after `drain_s`."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals are the main thread's: a test server in a thread has nothing to wrap
    uvicorn_exit = signal.getsignal(signal.SIGTERM)
    if not callable(uvicorn_exit):
        return  # no server installed one (an ASGI test client): nothing to delay
    loop = asyncio.get_running_loop()

    def on_sigterm(sig, frame):
        if state.draining:  # the second one: stop now
            uvicorn_exit(sig, frame)
            return
        state.draining = True
        log.info("SIGTERM: readiness is 503 from now; serving for %.1fs more, then finishing in-flight requests",
                 drain_s)
        loop.call_soon_threadsafe(loop.call_later, drain_s, uvicorn_exit, sig, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
