"""Dynamic batching: a bounded queue, a future per request, and a deadline on `time.monotonic()`.

One worker task per model takes the oldest request, then gathers more until the batch holds
`max_batch_size` rows or `max_delay_ms` has passed since the first one arrived, and runs the blocking
model call in a thread so the event loop keeps serving. Requests of other shapes wait for a later batch
(each batch holds one shape), and a request that is already past its deadline is dropped with 504
instead of running.

Latency policy: while the model is busy, new requests pile up in the queue and form the next batch by
themselves. Waiting for company only pays when traffic is steady, so a request that finds the queue
empty after a batch of one runs at once: a lone client on an idle server pays no batching delay.
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
from service.runtime.errors import DeadlineExceeded, ModelNotReady, Overloaded, ServiceError

log = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]
RunFn = Callable[[Tensors], Tensors]


class BatchCountError(ServiceError):
    """The model returned a different number of rows than the batch held."""


@dataclass
class _Pending:
    inputs: Tensors  # every array has the same leading (row) dimension
    rows: int
    signature: tuple  # (name, dtype, trailing shape) per input: only equal signatures share a batch
    deadline: float
    enqueued: float
    future: asyncio.Future = field(repr=False)


def _signature(inputs: Tensors) -> tuple:
    return tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(inputs.items()))


class DynamicBatcher:
    def __init__(self, run: RunFn, *, model: str, max_batch_size: int, max_delay_ms: float, max_queue: int,
                 enabled: bool = True):
        self.run_fn, self.model, self.enabled = run, model, enabled
        self.max_batch_size = max_batch_size if enabled else 1
        self.max_delay_s = max_delay_ms / 1000 if enabled else 0.0
        self.max_queue = max_queue
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{model}")
        self._task: asyncio.Task | None = None
        self._last_batch_requests = 0
        self._running = False
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.model}")

    async def drain_and_stop(self) -> None:
        """Let queued and running requests finish, then stop the worker and its thread.

        Once it is idle, new submissions are refused (503), so nothing can queue behind a stopped worker.
        Callers look a model up and submit with no await in between, so after a reload has swapped the
        new version in, nothing new reaches this one.
        """
        while self._queue or self._running:
            await asyncio.sleep(0.005)
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
        if self._closed:
            raise ModelNotReady(f"this version of {self.model!r} is being unloaded or replaced; retry")
        if len(self._queue) >= self.max_queue:
            raise Overloaded(f"model {self.model!r} has {len(self._queue)} requests queued; retry shortly")
        # Without batching a request is one opaque item: its tensors need not share a first axis (a
        # recurrent model's state is (layers, B, H)).
        rows = {len(v) for v in inputs.values()} if self.enabled else {1}
        if len(rows) != 1:
            raise ValueError(f"inputs disagree on the batch dimension: {sorted(rows)}")
        now = time.monotonic()
        item = _Pending(inputs, rows.pop(), _signature(inputs), now + timeout_s, now,
                        asyncio.get_running_loop().create_future())
        self._queue.append(item)
        metrics.QUEUE_DEPTH.labels(self.model).set(len(self._queue))
        self._wakeup.set()
        return await item.future

    # -- worker ----------------------------------------------------------------------------------
    def _take_batch(self) -> list[_Pending]:
        """Pop the oldest request and every queued one with its signature that still fits."""
        first = self._queue.popleft()
        batch, rows, keep = [first], first.rows, deque()
        while self._queue and rows < self.max_batch_size:
            item = self._queue.popleft()
            if item.signature == first.signature and rows + item.rows <= self.max_batch_size:
                batch.append(item)
                rows += item.rows
            else:
                keep.append(item)
        self._queue.extendleft(reversed(keep))
        return batch

    async def _gather(self) -> list[_Pending]:
        batch = self._take_batch()
        steady = self._last_batch_requests > 1 or bool(self._queue)
        deadline = batch[0].enqueued + self.max_delay_s
        while steady and sum(p.rows for p in batch) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break
            self._queue.extendleft(reversed(batch))
            batch = self._take_batch()
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Busy from the moment requests leave the queue until their results are set, so that
            # drain_and_stop never cancels the worker while it holds a batch.
            self._running = True
            try:
                batch = await self._gather()
                metrics.QUEUE_DEPTH.labels(self.model).set(len(self._queue))
                self._last_batch_requests = len(batch)
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
                    f"request waited {now - p.enqueued:.3f}s in the queue of {self.model!r}, past its deadline"))
                continue
            metrics.QUEUE_WAIT.labels(self.model).observe(now - p.enqueued)
            live.append(p)
        return live

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        counts = [p.rows for p in batch]
        total = sum(counts)
        names = batch[0].inputs.keys()
        feeds = {k: np.concatenate([p.inputs[k] for p in batch]) if len(batch) > 1 else batch[0].inputs[k]
                 for k in names}
        metrics.BATCH_SIZE.labels(self.model).observe(total)
        t0 = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, self.run_fn, feeds)
            if not self.enabled:  # one request, whole outputs
                if not batch[0].future.done():
                    batch[0].future.set_result(outputs)
                return
            bad = {k: len(v) for k, v in outputs.items() if len(v) != total}
            if bad:
                raise BatchCountError(f"model {self.model!r} returned {bad} rows for a batch of {total}")
        except Exception as exc:  # fan the failure out to every request in the batch
            log.exception("batch of %d rows failed on %s", total, self.model)
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        finally:
            metrics.INFERENCE_SECONDS.labels(self.model).observe(time.perf_counter() - t0)
        offsets = np.cumsum([0, *counts])
        for p, lo, hi in zip(batch, offsets[:-1], offsets[1:]):
            if not p.future.done():
                p.future.set_result({k: v[lo:hi] for k, v in outputs.items()})
