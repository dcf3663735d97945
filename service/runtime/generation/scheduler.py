"""Continuous batching for one language model: every active sequence advances one token per step.

One worker thread per model (onnxruntime and numpy never run on the event loop) loops:

1. admit queued sequences while fewer than `max_active` are active, and prefill their prompts
   (`stepper.start`: prompts of equal length in one graph call; rows are independent, see stepping);
2. drop sequences whose client went away (`cancel`), so a freed slot is gone before the next step;
3. one step for all active sequences: gather their states, run the graph once on (B, ...), sample every row
   with that row's own parameters and seeded generator (`sampling.step`), and scatter the states back;
4. hand the step's tokens to the event loop; finished sequences leave at once.

Hand-off: waking another thread costs the waker a futex or self-pipe write and, on this machine's VM,
~40-140 us a step (measured): the GIL goes to the woken event loop, which keeps it while it handles the
tokens. So the worker wakes the loop only when it is idle; while sequences are active the loop collects
the outbox every POLL_S by itself (a timer, nothing on the worker's path), and each stream gets the tokens
of the steps since in one write.

Bounds: `max_active` sequences step together; up to `max_waiting` more queue for a slot; beyond that,
`submit` raises Overloaded (503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import AsyncIterator

import numpy as np

from service import metrics
from service.runtime.generation import sampling
from service.runtime.errors import GenerationFailed, ModelNotReady, Overloaded, shown
from service.runtime.generation.stepping import RecurrentStep, NgramStep
from service.runtime.generation.sequence import Event, Sequence

log = logging.getLogger(__name__)
POLL_S = 0.002  # while sequences are active, the event loop collects their tokens this often
NO_HISTORY = np.array([], np.int64)


def _text(seq: Sequence, token: int, end: str | None) -> tuple[str, bool]:
    """The text `token` adds to `seq` (all that is held back too when the sequence ends with it; none for
    the model's own end token), and whether it completed a stop sequence."""
    if end == "stop":  # the end token
        return seq.pipeline.flush(), False
    text, stopped = seq.pipeline.push(token)
    return (text + seq.pipeline.flush() if end and not stopped else text), stopped


class _Rows:
    """What a step needs from its B sequences that changes only when one joins or leaves; `_active` is a new
    list whenever that happens, so `seqs is self._active` tells whether this is still current."""

    __slots__ = ("seqs", "plan", "rngs", "histories", "with_history")

    def __init__(self, seqs: list[Sequence]):
        self.seqs = seqs
        self.plan = sampling.Plan([s.params for s in seqs])
        self.rngs = [s.draws for s in seqs]
        self.histories = [NO_HISTORY] * len(seqs)  # refreshed each step for the rows with a history
        self.with_history = [i for i, s in enumerate(seqs) if s.history is not None]


class Scheduler:
    def __init__(self, stepper: RecurrentStep | NgramStep, *, model: str, max_active: int, max_waiting: int):
        self.stepper, self.model = stepper, model
        self.max_active, self.max_waiting = max_active, max_waiting
        self._inbox: deque[Sequence] = deque()  # appended on the loop, taken by the worker (deque ops are atomic)
        self._prefilling = 0  # taken from the inbox, not yet active: still counted against the bounds
        self._active: list[Sequence] = []  # the worker's alone
        self._wake = threading.Event()
        self._outbox: list[tuple[Sequence, Event]] = []  # events on their way to the event loop
        self._outbox_lock = threading.Lock()
        self._wake_pending = False  # a call_soon_threadsafe(_put) is on its way
        self._polling = False  # the loop collects the outbox on a timer (under _outbox_lock)
        self._poll_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._rows: _Rows | None = None  # the worker's, for the current self._active
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.steps = 0
        # Children made now, so every loaded language model's series exist in a scrape from the start.
        self._m_active, self._m_waiting = metrics.GEN_ACTIVE.labels(model), metrics.GEN_WAITING.labels(model)
        self._m_ttft = metrics.TIME_TO_FIRST_TOKEN.labels(model)
        self._m_tpot = metrics.TIME_PER_OUTPUT_TOKEN.labels(model)
        self._m_tokens, self._m_batch = metrics.GENERATED_TOKENS.labels(model), metrics.GEN_STEP_BATCH.labels(model)

    # -- lifecycle (event loop) ------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._work, name=f"gen-{self.model}", daemon=True)
            self._thread.start()

    async def drain_and_stop(self) -> None:
        """Refuse new sequences, let the queued and active ones finish, then end the worker."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._put()  # whatever the worker delivered last
            if self._poll_timer is not None:
                self._poll_timer.cancel()
                self._poll_timer = None
        self._m_active.set(0)
        self._m_waiting.set(0)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def waiting(self) -> int:
        return len(self._inbox)

    # -- requests (event loop) -------------------------------------------------------------------
    def submit(self, seq: Sequence) -> Sequence:
        if self._closing or self._thread is None:
            raise ModelNotReady(f"model {shown(self.model)} is not accepting generation requests (unloading)")
        if len(self._inbox) + self._prefilling + len(self._active) >= self.max_active + self.max_waiting:
            raise Overloaded(f"model {shown(self.model)} has {self.max_active} sequences generating and "
                             f"{self.max_waiting} waiting; retry later")
        self._inbox.append(seq)
        self._m_waiting.set(len(self._inbox))
        self._wake.set()
        return seq

    def cancel(self, seq: Sequence) -> None:
        """The client went away: the worker drops the sequence before its next step."""
        seq.cancelled = True
        self._wake.set()

    async def batches(self, seq: Sequence) -> AsyncIterator[list[Event]]:
        """The sequence's events, in lists of those ready together; closing the iterator early cancels it."""
        try:
            while not seq.done:
                if not seq.events:
                    seq.waiter = self._loop.create_future()
                    try:
                        await seq.waiter
                    finally:
                        seq.waiter = None
                ready, seq.events = seq.events, []
                last = ready[-1]
                seq.done = last.finish is not None
                if last.error is not None:
                    raise last.error
                yield ready
        finally:
            if not seq.done:
                self.cancel(seq)

    # -- the worker thread -----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            self._admit()
            if self._active:
                self._step()
            elif self._closing and not self._inbox:
                return
            else:
                self._wake.wait(0.5)
                self._wake.clear()

    def _admit(self) -> None:
        if not self._inbox or len(self._active) >= self.max_active:
            return
        new = []
        while self._inbox and len(self._active) + len(new) < self.max_active:
            # Counted before it leaves the inbox, so that submit() never sees it in neither place.
            self._prefilling += 1
            seq = self._inbox.popleft()
            if seq.cancelled:
                self._prefilling -= 1
            else:
                new.append(seq)
        self._m_waiting.set(len(self._inbox))
        if not new:
            return
        try:
            starts = self.stepper.start([s.ids for s in new])  # prefill: equal-length prompts together
        except Exception as exc:  # onnxruntime's own types; these sequences alone fail
            log.exception("%s: prefill failed", self.model)
            error = GenerationFailed(f"prefill failed: {type(exc).__name__}: {exc}")
            self._deliver([(s, Event(None, "", "error", error)) for s in new])
            self._prefilling = 0
            return
        for seq, (state, pending) in zip(new, starts):
            seq.state, seq.pending = state, pending
        self._active = self._active + new  # a new list whenever the rows change (see _Rows)
        self._prefilling = 0
        self._m_active.set(len(self._active))

    def _step(self) -> None:
        act = self._active
        if any(s.cancelled for s in act):
            act = self._active = [s for s in act if not s.cancelled]
            self._m_active.set(len(act))
            if not act:
                return
        rows = self._rows
        if rows is None or rows.seqs is not act:
            rows = self._rows = _Rows(act)
        try:
            logits, states = self.stepper.step([s.state for s in act], np.array([s.pending for s in act]))
            for i in rows.with_history:
                rows.histories[i] = np.array(act[i].history, np.int64)
            choices = sampling.step(logits, rows.plan, rows.histories, rows.rngs)
        except Exception as exc:
            log.exception("%s: generation step failed", self.model)
            error = GenerationFailed(f"generation step failed: {type(exc).__name__}: {exc}")
            self._deliver([(s, Event(None, "", "error", error)) for s in act])
            self._active = []
            self._m_active.set(0)
            return
        self.steps += 1
        self._m_batch.observe(len(act))
        self._m_tokens.inc(len(act))
        now, out, keep = time.perf_counter(), [], []
        for seq, state, choice in zip(act, states, choices):
            token = seq.pending = choice.token
            seq.state = state
            seq.generated += 1
            if seq.history is not None:
                seq.history.append(token)
            if seq.generated == 1:
                seq.t_first = now
                self._m_ttft.observe(now - seq.t_queued)
            finish, text = self._finish(seq, token)
            out.append((seq, Event(choice, text, finish)))
            if finish is None:
                keep.append(seq)
            elif seq.generated > 1:
                self._m_tpot.observe((now - seq.t_first) / (seq.generated - 1))
        if len(keep) != len(act):
            self._active = keep
            self._m_active.set(len(keep))
        self._deliver(out)

    def _finish(self, seq: Sequence, token: int) -> tuple[str | None, str | None]:
        """Why the sequence ends after `token` (or None), and the text it adds: None when the event loop
        renders it later (a sequence without stop sequences, whose end the text cannot change)."""
        end = "stop" if token == self.stepper.eos else "length" if seq.generated >= seq.max_tokens else None
        if not seq.text_on_worker:
            return end, None
        text, stopped = _text(seq, token, end)
        return ("stop" if stopped else end), text

    @staticmethod
    def _render(seq: Sequence, event: Event) -> str:
        """An event's text, for a sequence without stop sequences (on the event loop, in token order)."""
        return _text(seq, event.choice.token, event.finish)[0]

    def _deliver(self, events: list[tuple[Sequence, Event]]) -> None:
        """Queue events for the event loop; wake it only if it is not polling and no wake-up is on its way."""
        with self._outbox_lock:
            self._outbox.extend(events)
            if self._polling or self._wake_pending:
                return
            self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._put)
        except RuntimeError:  # the event loop has closed (shutdown): nobody is listening
            pass

    def _poll(self) -> None:
        self._poll_timer = None
        self._put()

    def _put(self) -> None:  # on the event loop
        with self._outbox_lock:
            events, self._outbox, self._wake_pending = self._outbox, [], False
            # Sequences still stepping (or queued) will have more tokens: collect them on a timer. Decided
            # under the lock, so the worker's last delivery either finds `_polling` set or wakes the loop.
            self._polling = bool(self._active or self._inbox) and not self._closing
        if self._polling and self._poll_timer is None:
            self._poll_timer = self._loop.call_later(POLL_S, self._poll)
        for seq, event in events:
            if event.text is None:
                event.text = self._render(seq, event)
            seq.events.append(event)
            if seq.waiter is not None and not seq.waiter.done():
                seq.waiter.set_result(None)
