"""Multi-process metric values written to the workers' shared files in batches, not at every update.

With `--workers N`, prometheus_client keeps each worker's metric values in memory-mapped files of its own, and
/metrics adds every worker's files up (service.metrics). Its value class writes each update through to the
file, under a lock, after asking the kernel for the process id (to notice a fork). A LeNet request's
updates (requests in flight up and down, queue depth and wait, the request count and its duration, and its
share of its batch's) took 6.66 us of CPU that way against 3.20 us here and 2.49 us in a single worker
(`benchmarks/metrics_bench.py`, AVX-512 VNNI AMD EPYC Zen 5; the run is linked from docs/performance.md),
where a request costs each of two workers about 100 us of CPU in all. That difference was the one
per-request cost that two workers paid and one did not.

Here an update changes the value in memory and marks it; `flush` writes the marked values to the file. Each
worker flushes every FLUSH_S (`flush_every`, a task on its event loop, which also flushes when it ends with
the worker's lifespan), and before it answers /metrics itself. So a scrape sees another worker's updates at
most FLUSH_S late, and a worker killed outright loses at most its last FLUSH_S of counts (the files of a
dead worker's counters stay and keep adding up). uvicorn spawns its workers rather than forking them, and
each flush still goes through the library's own write, with its fork check.
"""

from __future__ import annotations

import asyncio
import threading

from prometheus_client import values

FLUSH_S = 0.05

# One lock for every value: the event loop, batch threads and generation workers all update metrics.
_lock = threading.Lock()
_pending: set = set()


def install() -> bool:
    """Make every metric declared from now on a batched one, when prometheus_client is in multi-process mode
    (PROMETHEUS_MULTIPROC_DIR was set before it was imported) -> whether they are."""
    base = values.ValueClass
    if not enabled() and getattr(base, "_multiprocess", False):
        values.ValueClass = _batched(base)
    return enabled()


def enabled() -> bool:
    """Whether metrics declared now get batched values (so a worker must run `flush_every`)."""
    return getattr(values.ValueClass, "batched", False)


def _batched(base: type) -> type:
    class BatchedValue(base):
        """prometheus_client's multi-process value (`base`), its file written by `flush` instead of at every
        update. The library's lock and fork check guard the write; ours guards the value."""

        batched = True

        def inc(self, amount):
            with _lock:
                self._value += amount
                self._timestamp = 0.0
                _pending.add(self)

        def set(self, value, timestamp=None):
            with _lock:
                self._value = value
                self._timestamp = timestamp or 0.0
                _pending.add(self)

        def get(self):
            with _lock:
                return self._value

        def write(self) -> None:
            """To the file (the caller holds _lock, so no update lands between the read and the write)."""
            base.set(self, self._value, self._timestamp)

    return BatchedValue


def flush() -> None:
    """Write every value updated since the last flush to this worker's files."""
    with _lock:
        for value in _pending:
            value.write()
        _pending.clear()


async def flush_every(seconds: float = FLUSH_S) -> None:
    """Flush every `seconds` until cancelled, and once more then (the worker's shutdown)."""
    try:
        while True:
            await asyncio.sleep(seconds)
            flush()
    finally:
        flush()
