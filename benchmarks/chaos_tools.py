"""What benchmarks/chaos.py measures with: the server's RSS from /proc/<pid>/status, and an asyncio
client (serve_bench's keep-alive connections) that records every answer, or that none came."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from benchmarks.chaos_requests import Call
from benchmarks.serve_bench import RawConnection

TIMEOUT_S = 120.0  # per request: the largest ones take seconds, a hang is a finding


# -- the server's memory -----------------------------------------------------------------------------

def vm_mb(pid: int, key: str) -> float | None:
    """VmRSS or VmHWM of `pid` in MB; None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class RssWatch:
    """A process's RSS before, at its peak during, and after a `with` block. The peak is the kernel's
    high-water mark (VmHWM) after a reset through /proc/PID/clear_refs (Linux 4.0+), and VmRSS sampled every
    10 ms: the peak where the reset is refused, and the last figure of a process that exits meanwhile."""

    def __init__(self, pid: int):
        self.pid = pid
        self.before = self.peak = self.after = None

    def __enter__(self) -> RssWatch:
        self.before = self.peak = vm_mb(self.pid, "VmRSS")
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.keys = ("VmRSS", "VmHWM")
        except OSError:
            self.keys = ("VmRSS",)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self._note()

    def _note(self) -> None:
        for key in self.keys:
            mb = vm_mb(self.pid, key)
            if mb is not None:
                self.peak = max(self.peak, mb)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._note()

    async def settle(self, seconds: float) -> None:
        """Read RSS "after" once freed memory had `seconds` to go back (allocators return it lazily)."""
        await asyncio.sleep(seconds)
        self.after = vm_mb(self.pid, "VmRSS")

    @property
    def increase_mb(self) -> float:
        return self.peak - self.before

    @property
    def after_share(self) -> float:
        return (self.after - self.before) / self.before

    def cell(self) -> str:
        after = "-" if self.after is None else f"{self.after:.0f} ({self.after_share:+.1%})"
        return f"{self.before:.0f} / {self.peak:.0f} (+{self.increase_mb:.0f}) / {after}"


# -- the client ----------------------------------------------------------------------------------------

@dataclass
class Outcome:
    call: Call
    status: int  # 0: no answer (connection dropped, or no answer within TIMEOUT_S)
    seconds: float
    headers: dict[str, str]
    content: bytes

    @property
    def message(self) -> str:
        """The error message the server gave (also in OpenAI's shape), or what the client saw."""
        try:
            doc = json.loads(self.content)
            error = doc["error"]
            return error["message"] if isinstance(error, dict) else str(error)
        except (ValueError, KeyError, TypeError):
            return self.content[:200].decode(errors="replace")


async def send(conn: RawConnection, call: Call, port: int, timeout: float = TIMEOUT_S) -> Outcome:
    t0 = time.perf_counter()
    try:
        r = await asyncio.wait_for(conn.request(call.encode(port)), timeout)
        return Outcome(call, r.status, time.perf_counter() - t0, r.headers, r.content)
    except (OSError, EOFError, asyncio.TimeoutError, asyncio.LimitOverrunError, ValueError, IndexError) as exc:
        conn.close()  # a half-read answer leaves the connection unusable
        return Outcome(call, 0, time.perf_counter() - t0, {}, repr(exc).encode())


async def once(port: int, call: Call, timeout: float = TIMEOUT_S) -> Outcome:
    conn = RawConnection(port)
    try:
        return await send(conn, call, port, timeout)
    finally:
        conn.close()


async def drive(port: int, calls: Iterable[Call], workers: int) -> list[Outcome]:
    """`workers` keep-alive connections take the next call as soon as their last one answered, until
    `calls` runs out (one shared iterator: each call is sent once)."""
    calls, out = iter(calls), []

    async def worker() -> None:
        conn = RawConnection(port)
        try:
            for call in calls:
                out.append(await send(conn, call, port))
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(workers)))
    return out


def until(stop: asyncio.Event, calls: Iterable[Call]) -> Iterator[Call]:
    for call in calls:
        if stop.is_set():
            return
        yield call


async def seconds_until(port: int, calls: list[Call], status: int = 200, limit: float = 30.0) -> float | None:
    """Seconds until each call in turn answers `status`, each retried every 10 ms; None past `limit`."""
    conn, t0 = RawConnection(port), time.perf_counter()
    try:
        for call in calls:
            while (await send(conn, call, port, limit)).status != status:
                if time.perf_counter() - t0 > limit:
                    return None
                await asyncio.sleep(0.01)
        return time.perf_counter() - t0
    finally:
        conn.close()


def tally(outcomes: Iterable[Outcome]) -> Counter:
    return Counter(o.status for o in outcomes)


def shown(o: Outcome) -> str:
    return f"{o.call.kind} -> {o.status or 'no answer'}: {o.message[:120]}"


async def probe_while(port: int, probe: Call, task: asyncio.Task) -> list[Outcome]:
    """A small request, again and again on one connection, while `task` runs."""
    conn, out = RawConnection(port), []
    try:
        while not task.done():
            out.append(await send(conn, probe, port))
    finally:
        conn.close()
    return out
