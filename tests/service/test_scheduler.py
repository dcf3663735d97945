"""The continuous-batching scheduler with a fake stepper (joins, leaves, bounds, drain), and the real
stepping graphs' row independence (a row's logits at B=1 equal its logits in a batch of 32)."""

from __future__ import annotations

import asyncio
import copy
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from zooserve.card import load_card
from service.runtime.errors import GenerationFailed, ModelNotReady, Overloaded
from service.runtime.tasks.registry import served_class
from service.runtime.engine.session import OnnxModel, session_options
from service.runtime.generation.sampling import SamplingParams
from service.runtime.generation import scheduler as scheduler_module
from service.runtime.generation.scheduler import Scheduler
from service.runtime.generation.sequence import Sequence
from zooserve.text import Vocab
from tests.service.conftest import run

ROOT = Path(__file__).resolve().parents[2]
V = 7


class CountingStep:
    """Token t is always followed by (t + 1) % V; records the batch size of every step. `gate`, when set
    up, makes each step wait for permission, so a test controls exactly when steps happen."""

    eos = None
    steps_run = None  # one token per call, as a stepper without a steps graph

    def __init__(self):
        self.sizes: list[int] = []
        self.entered = 0  # steps begun (the batch gathered), including one waiting at the gate
        self.gate: threading.Semaphore | None = None

    def start(self, prompts):  # the first token follows the prompt's last, with no step
        return [(None, self.logits(ids[-1:])[0]) for ids in prompts]

    def prefill(self, prompts):  # `start` in one call, as NgramStep's
        return self.start(prompts)
        yield

    def step(self, states, pending):
        self.entered += 1
        if self.gate is not None:
            assert self.gate.acquire(timeout=10)
        self.sizes.append(len(states))
        return self.logits(pending), states

    @staticmethod
    def logits(last: np.ndarray) -> np.ndarray:
        """(B, V): certain of (t + 1) % V after each token t of last (B,)."""
        out = np.full((len(last), V), -10.0, np.float32)
        out[np.arange(len(last)), (last + 1) % V] = 10.0
        return out


class Collect:
    """The text pipeline: token ids as digits; never a stop sequence."""

    def push(self, token):
        return str(token), False

    def flush(self):
        return ""


def seq(first: int, max_tokens: int) -> Sequence:
    return Sequence(np.array([first], np.int64), SamplingParams(temperature=0), np.random.default_rng(0),
                    max_tokens=max_tokens, pipeline=Collect())


def gated_scheduler(name: str, max_active: int, max_waiting: int) -> tuple[CountingStep, Scheduler]:
    """A started scheduler whose steps each wait for `step.gate.release()` (call inside the event loop)."""
    step = CountingStep()
    step.gate = threading.Semaphore(0)
    sched = Scheduler(step, model=name, max_active=max_active, max_waiting=max_waiting)
    sched.start()
    return step, sched


@contextmanager
def together():
    """Submits in this block reach the worker as one: it cannot take the first from its inbox before the
    rest are in. The worker, woken by the first submit, needs the GIL, which the event loop keeps until it
    blocks or the switch interval runs out (100 us once a test app has started: `create_app` sets it)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(60.0)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


async def text_of(sched: Scheduler, s: Sequence) -> tuple[str, str]:
    events = [e async for batch in sched.batches(s) for e in batch]
    return "".join(e.text for e in events), events[-1].finish


def test_sequences_join_and_leave_and_each_gets_its_own_tokens():
    async def body():
        step = CountingStep()
        sched = Scheduler(step, model="fake", max_active=8, max_waiting=8)
        sched.start()
        with together():
            a, b = sched.submit(seq(0, 3)), sched.submit(seq(4, 6))
        got = await asyncio.gather(text_of(sched, a), text_of(sched, b))
        late = sched.submit(seq(2, 2))  # joins an idle scheduler: steps by itself
        got.append(await text_of(sched, late))
        await sched.drain_and_stop()
        return got, step.sizes, sched, [s.generated for s in (a, b, late)]

    got, sizes, sched, generated = run(body)
    assert got == [("123", "length"), ("560123", "length"), ("34", "length")]
    assert generated == [3, 6, 2]  # each sequence's own count, handed back when it left its batch
    # Each first token comes from the prefill, with no step. a and b step together for their next 2 tokens,
    # then a has left at once: b's last 3 steps are alone; late's second token is one step by itself.
    assert sizes == [2, 2, 1, 1, 1, 1]
    with pytest.raises(ModelNotReady):
        sched.submit(seq(0, 1))


def test_a_first_and_a_last_token_reach_their_stream_at_once_whatever_the_poll_interval(monkeypatch):
    """While sequences are active, the event loop collects their tokens on a timer (poll_interval); a
    sequence's first token, and its last, wake it at once instead. With a timer of a minute, a sequence that
    joins a busy scheduler still gets its first and last token: only those wake-ups can have delivered them."""
    monkeypatch.setattr(scheduler_module, "POLL_S", 60.0)
    monkeypatch.setattr(scheduler_module, "POLL_MAX_S", 60.0)

    async def body():
        step = CountingStep()
        sched = Scheduler(step, model="fake-first", max_active=4, max_waiting=4)
        sched.start()
        busy = sched.submit(seq(0, 10**9))  # steps on and on
        while not step.sizes:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)  # its first token has set the loop polling, every minute
        late = sched.submit(seq(3, 1))
        first = await asyncio.wait_for(text_of(sched, late), 10)  # its first token is its last
        later = sched.submit(seq(0, 3000))  # many steps: its first token's wake-up comes long before its end
        whole = await asyncio.wait_for(text_of(sched, later), 10)
        sched.cancel(busy)
        await sched.drain_and_stop()
        return first, whole

    assert run(body) == (("4", "length"), ("".join(str(t % V) for t in range(1, 3001)), "length"))


def test_bounds_queue_then_refuse_with_overloaded():
    async def body():
        step, sched = gated_scheduler("fake-bounds", max_active=2, max_waiting=1)
        with together():
            seqs = [sched.submit(seq(i, 2)) for i in range(3)]  # 2 active + 1 waiting
        with pytest.raises(Overloaded):
            sched.submit(seq(5, 2))
        # The first two finish in one step (their first tokens come from the prefill); only then does the
        # third get a slot.
        step.gate.release()
        texts = [await text_of(sched, s) for s in seqs[:2]]
        step.gate.release()
        texts.append(await text_of(sched, seqs[2]))
        await sched.drain_and_stop()
        return texts, step.sizes

    texts, sizes = run(body)
    assert texts == [("12", "length"), ("23", "length"), ("34", "length")]
    assert sizes == [2, 1]


def test_a_sequence_in_prefill_still_counts_against_the_bounds():
    class SlowStart(CountingStep):
        def __init__(self):
            super().__init__()
            self.prefilling, self.release = threading.Event(), threading.Event()

        def start(self, prompts):
            self.prefilling.set()  # out of the inbox, not yet active
            assert self.release.wait(10)
            return super().start(prompts)

    async def body():
        step = SlowStart()
        sched = Scheduler(step, model="fake-prefill", max_active=1, max_waiting=0)
        sched.start()
        first = sched.submit(seq(0, 2))
        await asyncio.to_thread(step.prefilling.wait, 10)
        try:
            sched.submit(seq(3, 2))
            refused = False
        except Overloaded:
            refused = True
        step.release.set()
        text = await text_of(sched, first)
        await sched.drain_and_stop()
        return refused, sched.waiting, text

    refused, waiting, text = run(body)
    assert refused and waiting == 0 and text == ("12", "length")


def test_the_active_sequences_step_between_the_calls_of_a_long_prefill():
    """A prefill of several graph calls (a long prompt: PREFILL_CHUNK tokens per call) no longer holds the
    sequences already generating until it ends: the worker steps them between its calls, and the new
    sequence joins after its last call with its first token made."""
    log: list[tuple[str, int]] = []

    class ChunkedStart(CountingStep):
        def prefill(self, prompts):
            for i in range(3 if any(len(ids) > 1 for ids in prompts) else 1):  # a long prompt: 3 calls
                if i:
                    yield
                log.append(("prefill call", len(prompts)))
            return self.start(prompts)

        def step(self, states, pending):
            log.append(("step", len(states)))
            return super().step(states, pending)

    async def body():
        step = ChunkedStart()
        sched = Scheduler(step, model="fake-long-prefill", max_active=4, max_waiting=4)
        sched.start()
        step.gate = threading.Semaphore(0)  # steps wait for permission: the test decides when B arrives
        a = sched.submit(seq(0, 8))
        a_events = sched.batches(a)
        await a_events.__anext__()  # A's first token, from its prefill
        b = Sequence(np.array([5, 5, 3], np.int64), SamplingParams(temperature=0), np.random.default_rng(0),
                     max_tokens=3, pipeline=Collect())
        sched.submit(b)
        for _ in range(20):
            step.gate.release()
        b_text = await text_of(sched, b)
        async for _ in a_events:
            step.gate.release()
        await sched.drain_and_stop()
        return b_text

    assert run(body) == ("456", "length")
    b_calls = [i for i, entry in enumerate(log) if entry == ("prefill call", 1)][1:]  # A's own call first
    assert len(b_calls) == 3
    between = log[b_calls[0] + 1:b_calls[-1]]
    assert ("step", 1) in between and between.count(("prefill call", 1)) == 1  # A stepped alone meanwhile
    assert log[b_calls[-1] + 1] == ("step", 2)  # then B joined A in the batch


def test_a_first_token_comes_from_the_prefill_and_a_failed_prefill_fails_only_its_sequences():
    """max_tokens 1 is answered by the prefill alone (no step); a prefill that raises fails the sequences
    it held, with the error named, and the next ones generate as usual."""

    class PoisonStart(CountingStep):
        def start(self, prompts):
            if any(ids[0] == 6 for ids in prompts):
                raise RuntimeError("poisoned prompt")
            return super().start(prompts)

    async def body():
        step = PoisonStart()
        sched = Scheduler(step, model="fake-prefill-first", max_active=4, max_waiting=4)
        sched.start()
        one = await text_of(sched, sched.submit(seq(2, 1)))
        steps_after_one = len(step.sizes)
        with pytest.raises(GenerationFailed, match="prefill failed: RuntimeError: poisoned prompt"):
            await text_of(sched, sched.submit(seq(6, 3)))
        after = await text_of(sched, sched.submit(seq(0, 3)))
        await sched.drain_and_stop()
        return one, steps_after_one, after

    assert run(body) == (("3", "length"), 0, ("123", "length"))


def test_one_slow_call_does_not_keep_the_steps_graph_at_one_token_per_call():
    """k follows the last call's time per token. It used to be measured on calls of several tokens only, so
    one stalled call (here 0.2 s for 16 tokens: over CHUNK_S per token) set k to 1 for good."""

    class ChunkingStep(CountingStep):
        steps_run = True  # has a steps graph: `steps` below

        def __init__(self):
            super().__init__()
            self.calls: list[int] = []  # tokens per call, in order

        def steps(self, states, pending, uniforms, temperature):
            k = uniforms.shape[1]
            self.calls.append(k)
            if len(self.calls) == 2:
                time.sleep(0.2)  # the stall
            tokens = (pending[:, None] + np.arange(1, k + 1)) % V  # (B, k)
            logits = np.stack([self.logits(tokens[:, j] - 1) for j in range(k)], axis=1)  # (B, k, V)
            return tokens, logits, states

        def step(self, states, pending):
            self.calls.append(1)
            return super().step(states, pending)

    class NoStops(Collect):
        stop = ()  # no stop sequences: the tokens' text is the event loop's, and a call may make several

    async def body():
        step = ChunkingStep()
        sched = Scheduler(step, model="fake-chunks", max_active=2, max_waiting=2)
        sched.start()
        s = Sequence(np.array([0], np.int64), SamplingParams(temperature=0), np.random.default_rng(0),
                     max_tokens=120, pipeline=NoStops())
        text = await text_of(sched, sched.submit(s))
        await sched.drain_and_stop()
        return text, step.calls

    (text, finish), calls = run(body)
    assert text == "".join(str(t % V) for t in range(1, 121)) and finish == "length"
    assert calls[:3] == [16, 16, 1]  # the stalled call, then one token per call ...
    assert max(calls[3:]) == 16  # ... until the next call, fast again, was measured


def test_a_batch_that_grew_since_the_last_call_gets_fewer_tokens_per_call():
    """k comes from the last call's time per token, scaled by the rows when the batch has grown: while a
    burst of requests joined, k from a batch of 9 made a call of 22 rows last twice CHUNK_S, which the
    requests arriving meanwhile waited out before they could join."""
    from service.runtime.generation.scheduler import CHUNK_MAX, CHUNK_S

    class Rows:  # what _chunk reads of a batch
        def __init__(self, n: int):
            self.seqs = [None] * n

        def chunk_limit(self, stepper) -> int:
            return 1000  # no row near its max_tokens

    sched = Scheduler(CountingStep(), model="fake-k", max_active=32, max_waiting=0)
    assert sched._chunk(Rows(1)) == CHUNK_MAX  # nothing measured yet
    per_token = CHUNK_S / 20  # the last call: 9 rows, a twentieth of CHUNK_S per token
    sched._token_s, sched._token_rows = per_token, 9
    assert sched._chunk(Rows(9)) == CHUNK_MAX == 16  # 20 fit: capped
    assert sched._chunk(Rows(4)) == 16  # a smaller batch: the last figure as it is (its fixed costs stay)
    assert sched._chunk(Rows(22)) == int(CHUNK_S / (per_token * 22 / 9)) == 8  # not 16: a call of ~2x CHUNK_S
    assert sched._chunk(Rows(200)) == 1  # never fewer than one


def test_cancel_frees_the_slot_before_the_next_step():
    async def body():
        step, sched = gated_scheduler("fake-cancel", max_active=4, max_waiting=4)
        keep, drop = sched.submit(seq(0, 6)), sched.submit(seq(3, 6))
        stream = sched.batches(drop)
        # The worker may take `keep` from its inbox before `drop` is submitted (a thread race), so `drop`
        # joins before the first step or after it. Let steps through one at a time until its first token
        # (the prefill's, no step needed).
        first_token = asyncio.ensure_future(stream.__anext__())
        released = 0
        while not first_token.done():
            # A step is waiting at the gate, and drop's first token is not made yet (t_first, set on the worker
            # before the hand-off): a step let through after it could reach the event loop with it, in the
            # same batch of events, before this loop sees the first one alone.
            if step.entered > released and not drop.t_first:
                step.gate.release()
                released += 1
            await asyncio.wait([first_token], timeout=0.001)
        first = first_token.result()  # one token, then the client goes away ...
        joined = len(step.sizes)  # steps made before it joined
        while step.entered < released + 1:  # ... while the next step, which holds both rows, has begun
            await asyncio.sleep(0.001)
        await stream.aclose()
        assert drop.cancelled
        for _ in range(6 - released):
            step.gate.release()
        text, _ = await text_of(sched, keep)
        await sched.drain_and_stop()
        return first, text, step.sizes[joined:], sched.active

    first, text, sizes, active = run(body)
    assert [e.text for e in first] == ["4"] and text == "123456"
    # The step under way when the client left still carries its row; the next one no longer does.
    assert sizes[0] == 2 and set(sizes[1:]) == {1} and active == 0


@pytest.mark.parametrize("model", ["island-lstm", "island-gru", "island-ngram-word3"])
def test_a_rows_logits_do_not_depend_on_the_batch(model):
    """The property that makes generation deterministic whatever shares the step: row i of a 32-row step
    equals the same sequence stepped alone."""
    folder = ROOT / "models" / model / "1"
    card = load_card(folder)
    onnx_model = OnnxModel(folder / "model.onnx", card, providers=["CPUExecutionProvider"],
                           options=session_options(1, 1))
    stepper = served_class(card).stepper_class(card, Vocab.load(folder / "vocab.json"), onnx_model.run)
    prompts = [f"The engineer {i} said to Pencroft" + " and" * (i % 5) for i in range(32)]
    ids = [stepper.encode(p)[0] for p in prompts]
    starts = stepper.start(ids)  # prompts of equal length prefill together
    states, first = [s for s, _ in starts], np.stack([logits for _, logits in starts])  # first (32, V)
    pending = first.argmax(1)
    together, _ = stepper.step(states, pending)
    alone, alone_first = [], []
    for i in range(32):  # prefill and step each prompt by itself
        (state, logits), = stepper.start([ids[i]])
        alone_first.append(logits)
        alone.append(stepper.step([state], logits.argmax()[None])[0])
    alone = np.concatenate(alone)
    assert together.shape == (32, len(stepper.vocab)) and len({len(x) for x in ids}) < 32
    np.testing.assert_allclose(first, np.stack(alone_first), rtol=0, atol=1e-5)
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)
    assert (together.argmax(1) == alone.argmax(1)).all()
    # The same rows in the same order as the last step (its states given back whole): the stepper feeds
    # that step's outputs as they are, which must equal gathering the rows' states afresh from a list.
    nxt = together.argmax(1)
    _, last = stepper.step(states, pending)
    reused, _ = stepper.step(last, nxt)
    gathered, _ = stepper.step(copy.deepcopy(list(last)), nxt)
    np.testing.assert_array_equal(reused, gathered)


def test_the_active_sequences_gauge_counts_sequences_as_they_join():
    """It used to be set only when a sequence left: 0 while 8 streams generated."""
    from prometheus_client import REGISTRY

    def gauge(name: str) -> float:
        return REGISTRY.get_sample_value("zooserve_generation_active_sequences", {"model": name})

    async def body():
        step, sched = gated_scheduler("fake-gauge", max_active=8, max_waiting=8)
        with together():
            seqs = [sched.submit(seq(i, 3)) for i in range(5)]
        while step.entered < 1:  # admitted and the first step under way
            await asyncio.sleep(0.001)
        during = gauge("fake-gauge")
        for _ in range(3):
            step.gate.release()
        for s in seqs:
            await text_of(sched, s)
        after = gauge("fake-gauge")
        await sched.drain_and_stop()
        return during, after

    assert run(body) == (5, 0)
