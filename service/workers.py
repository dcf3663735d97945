"""Several worker processes on one port, each with its own listening socket (SO_REUSEPORT).

uvicorn's `--workers` binds one socket in the supervisor and hands it to every worker, so the workers race to
accept on it. uvloop (libuv) accepts every pending connection at each wake-up, so when a client opens its
connections in a burst (a load balancer's pool, wrk's 64), the worker that wakes first takes nearly all of
them and keeps them for their keep-alive lifetime: seen on a 2-core AMD Zen 5 with wrk -c64, 64 of 64
connections on one worker, and two workers served 0.92x what one did. With SO_REUSEPORT every worker listens
on a socket of its own and the kernel spreads new connections over them by a hash of their addresses, as
nginx's `reuseport` and gunicorn's `--reuse-port` do.

The supervisor stays uvicorn's (`Multiprocess`: health checks, restarts, signals); only the socket each
worker listens on changes. The supervisor's own socket is bound with SO_REUSEPORT but never listens: it
reserves the port without taking connections. Only Linux spreads connections over SO_REUSEPORT sockets (the
BSDs and macOS accept the option but do not balance), so elsewhere the workers share one socket as uvicorn's
do.

A port is taken only when it is free. SO_REUSEPORT lets any socket of the same user that sets it join the
port, so a second server, or workers left behind by a killed supervisor, would otherwise share the port
with this one, and the kernel would split the traffic between them without a word. So the supervisor first
binds the port without the option, which fails while any socket holds it. And each worker asks the kernel
for SIGTERM when its supervisor dies (Linux's PR_SET_PDEATHSIG). A supervisor killed outright (SIGKILL, the
OOM killer) cannot stop its workers itself, and they would keep serving on the port.

A worker that dies leaves its metric files behind (PROMETHEUS_MULTIPROC_DIR). prometheus_client keeps
adding up its live gauges (requests in flight, sequences generating, readiness) until it is told the process
is dead. So the supervisor tells it when it reaps a worker: after a crash, which uvicorn follows with a new
worker, and at shutdown.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys

import uvicorn
from prometheus_client import multiprocess as prometheus_multiprocess
from uvicorn.server import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess, multiprocess

log = logging.getLogger("uvicorn.error")  # beside uvicorn's own start-up lines


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def reuse_port_socket(host: str, port: int, *, reuse_port: bool = True) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEADDR (a restart is not held up by the last run's
    connections in TIME_WAIT) and SO_REUSEPORT (unless `reuse_port` is false), not yet listening."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def claim_port(host: str, port: int) -> socket.socket:
    """The supervisor's socket, on a port no socket holds: a bind without SO_REUSEPORT fails while any socket
    holds the port, SO_REUSEPORT or not. Then the port is bound again with the option, for the workers'
    sockets to join; only a server started in the same instant could slip in between. (Port 0: the port
    the kernel chose for the first bind.)"""
    with reuse_port_socket(host, port, reuse_port=False) as probe:
        port = probe.getsockname()[1]
    return reuse_port_socket(host, port)


def end_with_parent() -> None:  # pragma: no cover - in the worker
    """SIGTERM to this process when its parent (the supervisor) dies; at once if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("workers will outlive a killed supervisor: prctl failed (errno %d)", ctypes.get_errno())
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the supervisor died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


class ReapedProcess(multiprocess.Process):
    """A uvicorn worker whose live gauges leave /metrics once the supervisor has reaped it."""

    def join(self) -> None:  # in the supervisor, for a worker that has exited or been told to
        super().join()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and self.pid is not None:
            prometheus_multiprocess.mark_process_dead(self.pid)


class ReusePortProcess(ReapedProcess):
    """A uvicorn worker that listens on a socket of its own instead of the supervisor's (runs in the worker:
    uvicorn's Server listens on the socket it is given), and ends with its supervisor."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover - in the worker
        end_with_parent()
        # The supervisor's socket (run() below) names the port: with port 0, the one the kernel chose.
        super().target([reuse_port_socket(self.config.host, sockets[0].getsockname()[1])])


def run(config: uvicorn.Config) -> None:
    """Serve `config` (its `workers` > 1) with uvicorn's supervisor, each worker on its own socket."""
    if not sys.platform.startswith("linux"):
        log.warning("connections are spread over workers' own sockets only on Linux: the workers share one")
        multiprocess.Process = ReapedProcess
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    try:
        sock = claim_port(config.host, config.port)
    except OSError as exc:  # as uvicorn's own bind: say why, exit with its start-up failure code
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        sys.exit(STARTUP_FAILURE)
    log.info("zooserve running on http://%s:%d with %d workers (one socket each)", config.host,
             sock.getsockname()[1], config.workers)
    # uvicorn's Multiprocess makes its workers with the module's `Process`; this supervisor's are ours.
    multiprocess.Process = ReusePortProcess
    Multiprocess(config, sockets=[sock]).run()
