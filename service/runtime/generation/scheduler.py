"""Continuous batching for one language model: every active sequence advances one token per step.

One worker thread per model (onnxruntime and numpy never run on the event loop) loops:

1. admit queued sequences while fewer than `max_active` are active, prefill their prompts (`stepper.prefill`:
   prompts of equal length in one graph call, rows being independent, see stepping; a prompt read before
   comes from the prompt cache; a long one takes several calls, one per turn of this loop, so the active
   sequences step between them, and no more are admitted until it ends) and sample each one's first token
   from the prefill's own logits, which goes out at once: a sequence joins the batch with its first token
   made;
2. drop sequences whose client went away (`cancel`), so a freed slot is gone before the next step;
3. one call for all active sequences (`batch.Batch`, kept while none joins or leaves), with the last call's
   states as they are: either one step of the graph on (B, ...), every row sampled with its own parameters
   and seeded generator (`sampling.step`) in a fixed number of numpy calls whatever B; or, when the model has
   a steps graph and every row samples by the plain rule, k tokens per row from one call of that graph,
   which samples inside by the same rule with the same numbers (`_chunk` picks k: as many as fit CHUNK_S,
   never past a row's max_tokens);
4. hand each token step to the event loop as one record; finished sequences leave at once.

Per row and step, the worker does Python work only for rows that need it (a stop sequence: text on the
worker; a repetition penalty: the history; log-probabilities; a first or last token). Everything else
per token (each token's text, its event, the stream's write) happens on the event loop, while the worker's
next graph call runs without the GIL.

Hand-off: waking another thread costs the waker a futex or self-pipe write and, on this machine's VM,
~40-140 us a step (measured): the GIL goes to the woken event loop, which keeps it while it handles the
tokens. So the worker wakes the loop only when it is idle or a sequence has its first or last token (time
to first token, and the end of an answer); while sequences are active the loop collects the outbox on a
timer by itself (nothing on the worker's path), and each stream gets the tokens of the steps since in one
write. Each stream's wake-up and write cost the
loop tens of microseconds however many tokens it carries, so the timer's interval grows with the number of
streams (`poll_interval`: 2 ms up to 5 streams, 12.8 ms at 32, at most 20 ms): at 32 streams each write
carries several tokens instead of one or two.

Bounds: `max_active` sequences step together; up to `max_waiting` more queue for a slot; beyond that,
`submit` raises Overloaded (503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import AsyncIterator, NamedTuple

import numpy as np

from service import metrics
from service.runtime.errors import GenerationFailed, ModelNotReady, Overloaded, shown
from service.runtime.generation.batch import Batch
from service.runtime.generation.stepping import NgramStep, Prefill, RecurrentStep, advance
from service.runtime.generation.sequence import Event, Sequence

log = logging.getLogger(__name__)
# While sequences are active, the event loop collects their tokens every POLL_PER_STREAM_S per active stream,
# within [POLL_S, POLL_MAX_S]: a stream's wake-up and write cost the loop about 30 us however many tokens they
# carry (docs/generation.md), so this keeps those costs near a tenth of the loop's time.
POLL_S, POLL_PER_STREAM_S, POLL_MAX_S = 0.002, 0.0004, 0.02
# A steps graph makes up to CHUNK_MAX tokens per row in one call, as many as take about CHUNK_S: a call's fixed
# costs (onnxruntime's call and the Loop's set-up, the feeds, the worker's Python around it) are shared by its
# tokens (a raw B=1 call of the LSTM's steps graph: 1.2-1.6x a raw step per token at K=1, 1.00-1.05x at K=16),
# while a sequence that arrives waits about CHUNK_S at most to join, and a client that leaves costs that much.
CHUNK_MAX, CHUNK_S = 16, 0.01


def poll_interval(streams: int) -> float:
    """Seconds between the event loop's collections of tokens while `streams` sequences are active."""
    return min(POLL_MAX_S, max(POLL_S, streams * POLL_PER_STREAM_S))


def _text(seq: Sequence, token: int, end: str | None) -> tuple[str, bool]:
    """The text `token` adds to `seq` (all that is held back too when the sequence ends with it; none for
    the model's own end token), and whether it completed a stop sequence."""
    if end == "stop":  # the end token
        return seq.pipeline.flush(), False
    text, stopped = seq.pipeline.push(token)
    return (text + seq.pipeline.flush() if end and not stopped else text), stopped


class Step(NamedTuple):
    """One step's results for the event loop: row i's token is tokens[i]; rows in `events` come with their
    Event made by the worker (a last token, log-probabilities, text rendered on the worker), the others get
    theirs on the event loop, which also counts the step in the metrics. A failed step has no tokens, and
    every row an error event."""

    seqs: list[Sequence]
    tokens: np.ndarray | None  # (B,) int64
    events: dict[int, Event]


class Scheduler:
    def __init__(self, stepper: RecurrentStep | NgramStep, *, model: str, max_active: int, max_waiting: int):
        self.stepper, self.model = stepper, model
        self.max_active, self.max_waiting = max_active, max_waiting
        self._inbox: deque[Sequence] = deque()  # appended on the loop, taken by the worker (deque ops are atomic)
        self._prefilling = 0  # taken from the inbox, not yet active: still counted against the bounds
        self._prefill: tuple[list[Sequence], Prefill] | None = None  # the worker's: new sequences, their calls
        self._active: list[Sequence] = []  # the worker's alone
        self._wake = threading.Event()
        self._outbox: list[Step] = []  # steps on their way to the event loop
        self._outbox_lock = threading.Lock()
        self._wake_pending = False  # a call_soon_threadsafe(_put) is on its way
        self._polling = False  # the loop collects the outbox on a timer (under _outbox_lock)
        self._poll_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._batch: Batch | None = None  # the worker's, for the current self._active (None: make it anew)
        self._cancels = False  # a sequence was cancelled since the worker last looked
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.steps = 0  # token steps handed out (each prefill's first tokens count as one)
        self._token_s = 0.0  # the last call's seconds per token (0: none yet) ...
        self._token_rows = 1  # ... at this many rows
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
        self._cancels = True  # after the flag above: the worker clears this, then looks at every sequence
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
            if self._prefill is not None:
                self._continue_prefill()  # a long prefill's next call; more sequences wait for its end
            else:
                self._admit()
            if self._active:
                self._step()
            elif self._prefill is not None:
                continue
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
        self._prefill = (new, self.stepper.prefill([s.ids for s in new]))  # equal-length prompts together
        self._continue_prefill()

    def _continue_prefill(self) -> None:
        """The pending prefill's next graph call; after its last, the new sequences' first tokens (sampled from
        the prefill's own logits, out at once, before the batch's next call) and their joining the batch.
        A prompt of one call (PREFILL_CHUNK tokens or fewer, or from the prompt cache) joins in the call that
        admitted it; a longer one lets the active sequences step between its calls."""
        new, calls = self._prefill
        try:
            starts = advance(calls)
            if starts is None:
                return  # more calls to make
            for seq, (state, _) in zip(new, starts):
                seq.state = state
            first = Batch(new)
            sampled = first.sample(np.stack([logits for _, logits in starts]), first.states)  # logits (N, V)
        except Exception as exc:  # onnxruntime's own types; these sequences alone fail
            log.error("%s: prefill failed", self.model, exc_info=exc)
            self._fail(new, GenerationFailed(f"prefill failed: {type(exc).__name__}: {exc}"))
        else:
            ends = self._emit(first, sampled.tokens, sampled.choices)
            first.release()
            self._set_active(self._active + [s for i, s in enumerate(new) if i not in ends])
        self._prefill, self._prefilling = None, 0

    def _set_active(self, seqs: list[Sequence]) -> None:
        """A new list of active sequences: the current batch hands its rows back; the next step makes one."""
        if self._batch is not None:
            self._batch.release()
            self._batch = None
        self._active = seqs
        self._m_active.set(len(seqs))

    def _step(self) -> None:
        if self._cancels:
            self._cancels = False
            if any(s.cancelled for s in self._active):
                self._set_active([s for s in self._active if not s.cancelled])
                if not self._active:
                    return
        batch = self._batch = self._batch or Batch(self._active)
        k = self._chunk(batch)
        t_call = time.perf_counter()
        try:
            results = batch.advance(self.stepper, k)
        except Exception as exc:
            log.exception("%s: generation step failed", self.model)
            self._fail(batch.seqs, GenerationFailed(f"generation step failed: {type(exc).__name__}: {exc}"))
            self._set_active([])
            return
        # Every call, one token or several: measured only on calls of several, one slow call (a stall of the
        # machine, or a ramp of arrivals keeping the GIL) could set k to 1 for good, with nothing to measure
        # it again (seen: a burst of 32 streams stepping one token per call from then on).
        self._token_s, self._token_rows = (time.perf_counter() - t_call) / k, len(batch.seqs)
        for tokens, choices in results:  # no row ends before the last (Batch.chunk_limit)
            ends = self._emit(batch, tokens, choices)
        if ends:  # `_events` adds the rows that a stop sequence ends
            self._set_active([s for i, s in enumerate(batch.seqs) if i not in ends])

    def _emit(self, batch: Batch, tokens: np.ndarray, choices: dict) -> dict[int, str]:
        """Hand one token per row of `batch`, tokens (B,), to the event loop -> the rows it ends. At once when a
        row gets its first or last token (time to first token; the end of an answer), else on the loop's timer."""
        self.steps += 1
        ends = batch.ends(tokens, self.stepper.eos)
        fresh = bool(batch.fresh)
        # Usually no row needs Python work of its own: no stop sequence, log-probabilities, first or last token.
        events = self._events(batch, tokens, choices, ends) if batch.worker_text or choices or ends or fresh else {}
        self._deliver(Step(batch.seqs, tokens, events), urgent=fresh or bool(ends))
        return ends

    def _chunk(self, batch: Batch) -> int:
        """Tokens per row for the next call: as many as fit CHUNK_S at the last call's time per token, within
        the batch's limit. A batch that has grown since is assumed to cost in proportion to its rows (an
        overestimate: part of a step's cost is per call): while a burst of requests joins, K taken from the
        last, smaller batch made calls of twice CHUNK_S (seen: B=9 -> 22 at K=16, a 20 ms call that the
        last arrivals waited out before they could join)."""
        limit = batch.chunk_limit(self.stepper)
        if limit == 1:
            return 1
        if not self._token_s:
            return min(limit, CHUNK_MAX)
        per_token = self._token_s * max(1.0, len(batch.seqs) / self._token_rows)
        return max(1, min(limit, CHUNK_MAX, int(CHUNK_S / per_token)))

    def _events(self, batch: Batch, tokens: np.ndarray, choices: dict, ends: dict[int, str]) -> dict[int, Event]:
        """The events the worker makes itself: rows with stop sequences (their text decides whether they end;
        `ends` gains those that do), with log-probabilities, or at their last token. Also the time to the
        first token of the rows that have just joined, and the time per token of those that end."""
        events: dict[int, Event] = {}
        for i in batch.worker_text:
            text, stopped = _text(batch.seqs[i], tokens.item(i), ends.get(i))
            if stopped:
                ends[i] = "stop"
            events[i] = Event(tokens.item(i), text, ends.get(i))
        for i, choice in choices.items():
            events[i] = Event(choice.token, events[i].text if i in events else None, ends.get(i), choice)
        for i, finish in ends.items():
            if i not in events:
                events[i] = Event(tokens.item(i), None, finish)
        now = time.perf_counter()
        for i in batch.fresh:
            seq = batch.seqs[i]
            seq.t_first = now
            self._m_ttft.observe(now - seq.t_queued)
        batch.fresh = []
        for i in ends:
            if (n := batch.generated(i)) > 1:
                self._m_tpot.observe((now - batch.seqs[i].t_first) / (n - 1))
        return events

    def _fail(self, seqs: list[Sequence], error: Exception) -> None:
        self._deliver(Step(seqs, None, {i: Event(-1, "", "error", error=error) for i in range(len(seqs))}))

    def _deliver(self, step: Step, *, urgent: bool = False) -> None:
        """Queue a step for the event loop; wake it only if it is not polling (or a sequence has its first or
        last token, `urgent`) and no wake-up is on its way."""
        with self._outbox_lock:
            self._outbox.append(step)
            if (self._polling and not urgent) or self._wake_pending:
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
            steps, self._outbox, self._wake_pending = self._outbox, [], False
            # Sequences still stepping (or queued) will have more tokens: collect them on a timer. Decided
            # under the lock, so the worker's last delivery either finds `_polling` set or wakes the loop.
            self._polling = bool(self._active or self._inbox) and not self._closing
        if self._polling and self._poll_timer is None:
            self._poll_timer = self._loop.call_later(poll_interval(len(self._active)), self._poll)
        for seqs, tokens, events in steps:
            if tokens is not None:
                self._m_batch.observe(len(seqs))
                self._m_tokens.inc(len(seqs))
                tokens = tokens.tolist()
            for i, seq in enumerate(seqs):
                event = events.get(i) if events else None
                if event is None:  # the usual token: its text is rendered here, in token order
                    token = tokens[i]
                    event = Event(token, seq.pipeline.push(token)[0])
                elif event.text is None:
                    event.text = _text(seq, event.token, event.finish)[0]
                seq.events.append(event)
                if seq.waiter is not None and not seq.waiter.done():
                    seq.waiter.set_result(None)
