"""Dynamic batching: a bounded queue, a future per request, and a deadline on `time.monotonic()`.

One worker task per model takes the oldest request, then gathers more until the batch holds
`max_batch_size` rows or `max_delay_ms` has passed since the first one arrived, and runs the blocking
model call in a thread so the event loop keeps serving. Requests of other shapes wait for a later batch
(each batch holds one shape), and a request that is already past its deadline is dropped with 504
instead of running.

Latency policy: while the model is busy, new requests pile up in the queue and form the next batch by
themselves. A batch waits for company only while requests for its model are on their way (`Arrivals`:
received by the HTTP layer, body still being read or parsed), and at most `max_delay_ms`: a lone client
on an idle server pays no batching delay, and a burst (closed-loop clients, a pipelined client) is not
kept waiting for requests that are not coming while the model sits idle, which on 2 cores cost a third
of the throughput at 16 clients. While it gathers, the worker sleeps until enough rows are queued to fill
the batch, nothing more is on its way, or its deadline passes. The HTTP layer announces the requests of
every batched endpoint (V2 infer, /classify, /score) before their bodies are read (`engine.arrivals`).

Inline runs: handing a batch to the model's thread and back costs two thread wake-ups (about 0.1 ms on a
2-core VM), more than LeNet computes for one image. A batch whose shape (rows and trailing shapes) last ran
in under `INLINE_RUN_S` runs on the event loop instead (the loop would only wait for it); heavier batches,
and any shape not measured yet, run in the thread, so the loop goes on parsing while the model computes.
A batch on an otherwise idle server (nothing else queued, on its way to any model, or running in a batcher's
model thread) runs inline up to `IDLE_INLINE_RUN_S`: the loop has nothing else to do, and a request that
comes in meanwhile waits at most that long, as it would for a batch's company. A lone request is such a
batch; so is the batch 64 closed-loop LeNet clients form once the loop has parsed all of them (the loop sat
idle through that run in the thread, and paid the hand-off on top). Requests still go through the
queue and the worker task: a submitter that ran its request itself (tried: "direct dispatch") left no chance
for concurrent requests to queue up, and a fast model stopped forming batches under load.

Variable-length inputs (text: `input_ids`, `attention_mask` of shape (rows, T)): with `pad` set, rows of
any length T share a batch, padded on axis 1 to the longest request in that batch (not to the model's
maximum), with each input's pad value. When more rows wait than one batch holds, the batch takes the
requests whose lengths are nearest the oldest one's (length bucketing: both this batch and the next pad
less); when everything fits, one call beats two. `zooserve_tokens_total` and
`zooserve_padding_tokens_total` count what the model was sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from service import metrics
from service.runtime.engine.arrivals import Arrivals, arrived
from service.runtime.errors import (BadInput, BatchCountError, DeadlineExceeded, ModelFailed, ModelNotReady,
                                    Overloaded, ServiceError, shown)

log = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]
RunFn = Callable[[Tensors], Tensors]
INLINE_RUN_S = 100e-6  # a batch measured faster than this runs on the event loop (see "Inline runs")
IDLE_INLINE_RUN_S = 2e-3  # ... and a batch on an otherwise idle server, up to this
_thread_runs = 0  # batches running in batchers' model threads now, over every batcher of the process
RUN_TIMES = 256  # batch shapes whose last run time is kept


@dataclass
class _Pending:
    inputs: Tensors  # every array has the same leading (row) dimension
    rows: int
    signature: tuple  # (name, dtype, trailing shape) per input: only equal signatures share a batch
    length: int  # T of the padded inputs (rows, T, ...); 0 without padding
    deadline: float
    enqueued: float
    future: asyncio.Future = field(repr=False)


class DynamicBatcher:
    def __init__(self, run: RunFn, *, model: str, max_batch_size: int, max_delay_ms: float, max_queue: int,
                 enabled: bool = True, pad: dict[str, int] | None = None, arrivals: Arrivals | None = None):
        """`pad`: input name -> fill value, for inputs (rows, T, ...) whose axis 1 may differ between requests.
        `arrivals`: the HTTP layer's count of requests on their way (none: a batch never waits for company)."""
        self.run_fn, self.model, self.enabled = run, model, enabled
        self.max_batch_size = max_batch_size if enabled else 1
        self.max_delay_s = max_delay_ms / 1000 if enabled else 0.0
        self.max_queue = max_queue
        self.pad = dict(pad or {}) if enabled else {}
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._want = 1  # the worker sleeps until this many rows are queued (or its gathering deadline)
        self._gathering = False
        self._arrivals = arrivals if arrivals is not None else Arrivals()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{model}")
        # (rows, signature) -> seconds of its last run: the trailing shapes are in the key, as a recurrent
        # model's cost grows with T. Padded inputs are never run inline. At most RUN_TIMES keys.
        self._run_seconds: dict[tuple, float] = {}
        self._task: asyncio.Task | None = None
        self._running = False
        self._idle = asyncio.Event()  # set while nothing is queued or running: what a drain waits for
        self._idle.set()
        self._closed = False
        # Labelled children looked up once: a labels() call per request is a lock and a dict lookup.
        self._m_depth = metrics.QUEUE_DEPTH.labels(model)
        self._m_wait = metrics.QUEUE_WAIT.labels(model)
        self._m_batch = metrics.BATCH_SIZE.labels(model)
        self._m_seconds = metrics.INFERENCE_SECONDS.labels(model)
        if self.pad:
            self._m_tokens = metrics.TOKENS.labels(model)
            self._m_padding = metrics.PADDING_TOKENS.labels(model)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.model}")

    async def drain_and_stop(self) -> None:
        """Let queued and running requests finish, then stop the worker and its thread.

        Once it is idle, new submissions are refused (503), so nothing can queue behind a stopped worker.
        Requests reach a batcher only under a lease on its model, and the repository drains a model once its
        leases are over (tasks.base), so after a reload nothing new reaches this one.
        """
        while self._queue or self._running:  # a push clears the event: check again once it is set
            await self._idle.wait()
        self._closed = True
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    @property
    def depth(self) -> int:
        return len(self._queue)

    # -- clients ---------------------------------------------------------------------------------
    async def submit(self, inputs: Tensors, *, timeout_s: float) -> Tensors:
        """Queue one request (arrays of `rows` rows each) and wait for its slice of the batch output."""
        self._admit(1)
        now = time.monotonic()
        item = self._pending(inputs, now, timeout_s)
        self._push((item,))
        return await item.future

    async def submit_many(self, requests: list[Tensors], *, timeout_s: float) -> list[Tensors]:
        """Queue several requests at once (all or none, against the queue limit); each may join a different
        batch, so texts of one call are bucketed by length like anyone else's. Results in the same order."""
        self._admit(len(requests))
        now = time.monotonic()
        items = [self._pending(x, now, timeout_s) for x in requests]
        self._push(items)
        results = await asyncio.gather(*(p.future for p in items), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results

    def _admit(self, n: int) -> None:
        if self._closed:
            raise ModelNotReady(f"this version of {shown(self.model)} is being unloaded or replaced; retry")
        if len(self._queue) + n > self.max_queue:
            raise Overloaded(f"model {shown(self.model)} has {len(self._queue)} requests queued; retry shortly")

    def _pending(self, inputs: Tensors, now: float, timeout_s: float) -> _Pending:
        # Without batching a request is one opaque item: its tensors need not share a first axis (a
        # recurrent model's state is (layers, B, H)).
        rows = {len(v) for v in inputs.values()} if self.enabled else {1}
        if len(rows) != 1:
            raise BadInput(f"inputs disagree on the batch dimension: {sorted(rows)}")
        length, signature = 0, []
        for k in sorted(inputs):
            v = inputs[k]
            if k in self.pad and v.ndim >= 2:
                signature.append((k, v.dtype.str, v.shape[2:]))
                if length and v.shape[1] != length:
                    raise BadInput(f"inputs {sorted(self.pad)} disagree on their length (axis 1): "
                                   f"{ {n: list(inputs[n].shape) for n in sorted(self.pad) if n in inputs} }")
                length = v.shape[1]
            else:
                signature.append((k, v.dtype.str, v.shape[1:]))
        return _Pending(inputs, rows.pop(), tuple(signature), length, now + timeout_s, now,
                        asyncio.get_running_loop().create_future())

    def _push(self, items) -> None:
        arrived()  # this request is no longer on its way: batches stop waiting for it
        self._idle.clear()
        self._queue.extend(items)
        self._queued_rows += sum(p.rows for p in items)
        self._m_depth.set(len(self._queue))
        if self._queued_rows >= self._want or (self._gathering and not self._arrivals.on_the_way(self.model)):
            self._wakeup.set()

    # -- worker ----------------------------------------------------------------------------------
    def _take_batch(self) -> list[_Pending]:
        """Pop the oldest request and the queued ones with its signature that still fit: in arrival order,
        or, for padded inputs when more wait than fit, nearest the oldest one's length first."""
        first = self._queue.popleft()
        batch, rows = [first], first.rows
        candidates = [p for p in self._queue if p.signature == first.signature]
        if self.pad and rows + sum(p.rows for p in candidates) > self.max_batch_size:
            candidates.sort(key=lambda p: abs(p.length - first.length))  # stable: arrival order among equals
        for p in candidates:
            if rows >= self.max_batch_size:
                break
            if rows + p.rows <= self.max_batch_size:
                batch.append(p)
                rows += p.rows
        if len(batch) > 1:
            taken = {id(p) for p in batch}
            self._queue = deque(p for p in self._queue if id(p) not in taken)
        self._queued_rows -= rows
        return batch

    async def _gather(self) -> list[_Pending]:
        batch = self._take_batch()
        rows = sum(p.rows for p in batch)
        deadline = batch[0].enqueued + self.max_delay_s
        loop = asyncio.get_running_loop()
        while rows < self.max_batch_size and self._arrivals.on_the_way(self.model):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Everything queued now is of another shape or does not fit: wake when enough new rows have
            # come to fill the batch, when nothing more is on its way, or at the deadline.
            self._want = self._queued_rows + self.max_batch_size - rows
            self._wakeup.clear()
            timer = loop.call_later(remaining, self._wakeup.set)
            self._gathering = True
            try:
                await self._wakeup.wait()
            finally:
                timer.cancel()
                self._want, self._gathering = 1, False
            self._queue.extendleft(reversed(batch))  # back in front, oldest first, and take again
            self._queued_rows += rows
            batch = self._take_batch()
            rows = sum(p.rows for p in batch)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Busy from the moment requests leave the queue until their results are set, so that
            # drain_and_stop never cancels the worker while it holds a batch.
            self._running = True
            try:
                batch = await self._gather()
                self._m_depth.set(len(self._queue))
                live = self._expire(batch, time.monotonic())
                if live:
                    await self._run(loop, live)
            finally:
                self._running = False

    def _expire(self, batch: list[_Pending], now: float) -> list[_Pending]:
        """Drop requests whose client left or whose deadline passed; the rest go to the model."""
        live = []
        for p in batch:
            if p.future.done():  # the client went away
                continue
            if now > p.deadline:
                p.future.set_exception(DeadlineExceeded(
                    f"request waited {now - p.enqueued:.3f}s in the queue of {shown(self.model)}, past its deadline"))
                continue
            self._m_wait.observe(now - p.enqueued)
            live.append(p)
        return live

    def _feeds(self, batch: list[_Pending], total: int) -> Tensors:
        """One array per input: the requests' rows stacked, padded inputs filled out to the longest."""
        if len(batch) == 1 and not self.pad:
            return batch[0].inputs
        longest = max(p.length for p in batch)
        feeds = {}
        for k, first in batch[0].inputs.items():
            if k in self.pad and first.ndim >= 2:
                out = np.full((total, longest, *first.shape[2:]), self.pad[k], dtype=first.dtype)  # (rows, T, ...)
                lo = 0
                for p in batch:
                    x = p.inputs[k]
                    out[lo:lo + len(x), :x.shape[1]] = x
                    lo += len(x)
                feeds[k] = out
            else:
                feeds[k] = np.concatenate([p.inputs[k] for p in batch]) if len(batch) > 1 else first
        if self.pad:
            tokens = sum(p.rows * p.length for p in batch)
            self._m_tokens.inc(tokens)
            self._m_padding.inc(total * longest - tokens)
        return feeds

    def _inline(self, rows: int, signature: tuple) -> bool:
        """Whether a batch runs on the event loop (see "Inline runs"): its shape last ran under INLINE_RUN_S, or
        the server is otherwise idle and it ran under IDLE_INLINE_RUN_S. Padded inputs never do."""
        if self.pad:
            return False
        seconds = self._run_seconds.get((rows, signature), 1.0)
        if seconds < INLINE_RUN_S:
            return True
        return (seconds < IDLE_INLINE_RUN_S and not self._queue and _thread_runs == 0
                and not len(self._arrivals))

    async def _in_thread(self, loop: asyncio.AbstractEventLoop, feeds: Tensors) -> tuple[Tensors, float]:
        global _thread_runs
        _thread_runs += 1
        try:
            return await loop.run_in_executor(self._executor, self._timed_run, feeds)
        finally:
            _thread_runs -= 1

    def _timed_run(self, feeds: Tensors) -> tuple[Tensors, float]:
        """The model's outputs and the seconds the call took, timed where it runs (not the thread hand-off)."""
        t0 = time.perf_counter()
        outputs = self.run_fn(feeds)
        return outputs, time.perf_counter() - t0

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        """Run a batch and hand each request its rows. When the run fails, only the requests that cause it
        fail: the batch is run again in halves, down to single requests (k bad requests among n cost about
        2k log2(n) more runs), so one bad request never fails its batch mates."""
        counts = [p.rows for p in batch]
        total = sum(counts)
        feeds = self._feeds(batch, total)
        self._m_batch.observe(total)
        t0 = time.perf_counter()
        try:
            key = (total, batch[0].signature)
            if self._inline(total, batch[0].signature):
                outputs, seconds = self._timed_run(feeds)
            else:
                outputs, seconds = await self._in_thread(loop, feeds)
            if len(self._run_seconds) >= RUN_TIMES:
                self._run_seconds.clear()  # shapes a client made up should not pile up
            self._run_seconds[key] = seconds
            if self.enabled:
                bad = {k: len(v) for k, v in outputs.items() if len(v) != total}
                if bad:
                    raise BatchCountError(f"model {shown(self.model)} returned {bad} rows for a batch of {total}")
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, BatchCountError):  # the latter is the model's own fault
                log.error("model %s failed on %d request(s) of %d rows: %s: %s", self.model, len(batch), total,
                          type(exc).__name__, exc)
                failure = exc if isinstance(exc, ServiceError) else \
                    ModelFailed(f"model {shown(self.model)} failed on this request: {_first_line(exc)}")
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(failure)
                return
            log.warning("a batch of %d requests failed on %s (%s); running it again in halves to find the "
                        "requests that cause it", len(batch), self.model, type(exc).__name__)
            half = len(batch) // 2
            await self._run(loop, batch[:half])
            await self._run(loop, batch[half:])
            return
        finally:
            self._m_seconds.observe(time.perf_counter() - t0)
        if len(batch) == 1:  # also every request of a model without batching: the whole outputs are its own
            if not batch[0].future.done():
                batch[0].future.set_result(outputs)
            return
        lo = 0
        for p in batch:
            if not p.future.done():
                p.future.set_result({k: v[lo:lo + p.rows] for k, v in outputs.items()})
            lo += p.rows


def _first_line(exc: Exception, limit: int = 300) -> str:
    """onnxruntime's messages run to several lines of internals: the type and the first line say enough."""
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return text if len(text) <= limit else text[:limit - 3] + "..."
