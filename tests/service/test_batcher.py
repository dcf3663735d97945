"""DynamicBatcher against a fake model (no onnxruntime): batch formation, latency policy, back-pressure,
deadlines, failure fan-out, shape separation, result routing, and draining. The last tests go through the
app to check the HTTP side of back-pressure (503 + Retry-After) and deadlines (504)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import numpy as np
import pytest

from service.runtime.engine.arrivals import Arrivals
from service.runtime.engine.batcher import DynamicBatcher
from service.runtime.errors import BadInput, BatchCountError, DeadlineExceeded, ModelFailed, Overloaded, ServiceError
from tests.service.conftest import gate_model, images, infer_json, run


class FakeModel:
    """run(feeds) -> {"y": x * 10 + 1}. Records every batch it sees; can be slowed, gated or made to fail."""

    def __init__(self, *, delay: float = 0.0, gated: bool = False, fail: Exception | None = None,
                 extra_rows: int = 0, poison: float | None = None):
        """`poison`: a batch holding this value anywhere fails, as a token id past the vocabulary would."""
        self.delay, self.fail, self.extra_rows, self.poison = delay, fail, extra_rows, poison
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.started = threading.Event()
        self.batches: list[dict[str, np.ndarray]] = []

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.batches.append({k: v.copy() for k, v in feeds.items()})
        self.started.set()
        assert self.gate.wait(10), "test never released the gate"
        if self.delay:
            time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        if self.poison is not None and (feeds["x"] == self.poison).any():
            raise RuntimeError("poisoned batch\n(internals of the failure, over several lines)")
        y = feeds["x"] * 10 + 1
        if self.extra_rows:
            y = np.concatenate([y, y[: self.extra_rows]])
        return {"y": y}

    @property
    def sizes(self) -> list[int]:
        return [len(b["x"]) for b in self.batches]

    async def wait_started(self) -> None:
        for _ in range(1000):
            if self.started.is_set():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("the fake model was never called")


def make_batcher(fake: FakeModel, *, max_batch_size: int = 8, max_delay_ms: float = 20.0, max_queue: int = 64,
                 enabled: bool = True, arrivals: Arrivals | None = None) -> DynamicBatcher:
    """Needs a running loop (call inside a coroutine). The model name is unique, so metrics never mix.
    `arrivals`: stands in for the HTTP layer's count of requests on their way."""
    b = DynamicBatcher(fake, model=f"fake-{uuid.uuid4().hex[:8]}", max_batch_size=max_batch_size,
                       max_delay_ms=max_delay_ms, max_queue=max_queue, enabled=enabled, arrivals=arrivals)
    b.start()
    return b


def rows(n: int, start: float = 0.0, width: int = 3, dtype=np.float32) -> dict[str, np.ndarray]:
    """n rows whose values are unique per request: start, start+1, ..."""
    return {"x": (start + np.arange(n * width, dtype=np.float64)).reshape(n, width).astype(dtype)}


def expected(inputs: dict[str, np.ndarray]) -> np.ndarray:
    return inputs["x"] * 10 + 1


# -- batch formation -----------------------------------------------------------------------------------

def test_requests_submitted_together_form_batches_up_to_max_batch_size():
    async def body():
        fake = FakeModel()
        b = make_batcher(fake, max_batch_size=4, max_delay_ms=20)
        reqs = [rows(1, start=100 * i) for i in range(10)]
        results = await asyncio.gather(*(b.submit(r, timeout_s=5) for r in reqs))
        await b.drain_and_stop()
        return fake, reqs, results

    fake, reqs, results = run(body)
    assert fake.sizes == [4, 4, 2]  # all ten were queued before the worker woke up
    for r, out in zip(reqs, results):
        np.testing.assert_array_equal(out["y"], expected(r))


def test_a_request_is_never_split_across_batches():
    async def body():
        fake = FakeModel()
        b = make_batcher(fake, max_batch_size=4, max_delay_ms=5)
        reqs = [rows(3, 0), rows(2, 1000), rows(1, 2000), rows(4, 3000)]
        results = await asyncio.gather(*(b.submit(r, timeout_s=5) for r in reqs))
        await b.drain_and_stop()
        return fake, reqs, results

    fake, reqs, results = run(body)
    # 3 + 1 fit together (the 2-row request waits: 3 + 2 > 4), then 2, then 4 alone.
    assert fake.sizes == [4, 2, 4]
    assert all(s <= 4 for s in fake.sizes)
    for r, out in zip(reqs, results):
        np.testing.assert_array_equal(out["y"], expected(r))


def test_lone_request_on_idle_batcher_runs_without_waiting_for_company():
    async def body():
        fake = FakeModel()
        b = make_batcher(fake, max_batch_size=8, max_delay_ms=1000)
        latencies = []
        for i in range(3):  # an idle server, one client at a time: none of them pays the 1 s delay
            t0 = time.monotonic()
            out = await b.submit(rows(1, i), timeout_s=5)
            latencies.append(time.monotonic() - t0)
            np.testing.assert_array_equal(out["y"], expected(rows(1, i)))
        await b.drain_and_stop()
        return fake, latencies

    fake, latencies = run(body)
    assert fake.sizes == [1, 1, 1]
    assert max(latencies) < 0.4, latencies  # far below max_delay_ms = 1000


def test_a_batch_waits_for_company_on_its_way_and_runs_once_it_has_come():
    async def body():
        fake, arrivals = FakeModel(), Arrivals()
        b = make_batcher(fake, max_batch_size=8, max_delay_ms=2000, arrivals=arrivals)
        arrivals.enter(b.model)  # a second request is being read by the HTTP layer

        async def second():
            await asyncio.sleep(0.05)
            arrivals.leave(b.model)  # parsed: it queues now
            return await b.submit(rows(1, 200), timeout_s=5)

        t0 = time.monotonic()
        first, _ = await asyncio.gather(b.submit(rows(1, 100), timeout_s=5), second())
        latency = time.monotonic() - t0
        await b.drain_and_stop()
        return fake, first, latency

    fake, first, latency = run(body)
    assert fake.sizes == [2]  # it waited for the second one ...
    np.testing.assert_array_equal(first["y"], expected(rows(1, 100)))
    assert 0.04 <= latency < 0.6, latency  # ... and ran when nothing more was on its way, not after 2 s


def test_a_batch_waits_at_most_max_delay_for_company_that_never_comes():
    delay_s = 0.2

    async def body():
        fake, arrivals = FakeModel(), Arrivals()
        b = make_batcher(fake, max_batch_size=8, max_delay_ms=delay_s * 1000, arrivals=arrivals)
        arrivals.enter(b.model)  # announced, but (say) its body turns out to be bad: it never queues
        t0 = time.monotonic()
        await b.submit(rows(1, 100), timeout_s=5)
        latency = time.monotonic() - t0
        arrivals.leave(b.model)
        await b.drain_and_stop()
        return fake, latency

    fake, latency = run(body)
    assert fake.sizes == [1]
    assert delay_s * 0.8 <= latency < delay_s + 0.4, latency  # waited, but not (much) longer than max_delay_ms


def test_a_full_batch_runs_before_the_delay_is_up_though_more_are_on_their_way():
    async def body():
        fake, arrivals = FakeModel(), Arrivals()
        b = make_batcher(fake, max_batch_size=2, max_delay_ms=2000, arrivals=arrivals)
        arrivals.enter(b.model)
        arrivals.enter(b.model)

        async def later():
            await asyncio.sleep(0.05)
            arrivals.leave(b.model)
            return await b.submit(rows(1, 200), timeout_s=5)

        t0 = time.monotonic()
        await asyncio.gather(b.submit(rows(1, 100), timeout_s=5), later())
        latency = time.monotonic() - t0
        arrivals.leave(b.model)
        await b.drain_and_stop()
        return fake, latency

    fake, latency = run(body)
    assert fake.sizes == [2]
    assert latency < 0.6, latency  # ran when the batch filled, not after max_delay_ms = 2000


def test_disabled_batching_runs_every_request_alone():
    async def body():
        fake = FakeModel()
        b = make_batcher(fake, max_batch_size=8, max_delay_ms=500, enabled=False)
        assert (b.max_batch_size, b.max_delay_s) == (1, 0.0)
        t0 = time.monotonic()
        await asyncio.gather(*(b.submit(rows(1, i), timeout_s=5) for i in range(4)))
        latency = time.monotonic() - t0
        await b.drain_and_stop()
        return fake, latency

    fake, latency = run(body)
    assert fake.sizes == [1, 1, 1, 1]
    assert latency < 0.4


def test_requests_of_different_trailing_shapes_or_dtypes_never_share_a_batch():
    async def body():
        fake = FakeModel()
        b = make_batcher(fake, max_batch_size=16, max_delay_ms=5)
        reqs = [rows(1, 0, width=3), rows(1, 10, width=4), rows(2, 20, width=3), rows(1, 30, width=4),
                rows(1, 40, width=3, dtype=np.float64), rows(1, 50, width=3)]
        results = await asyncio.gather(*(b.submit(r, timeout_s=5) for r in reqs))
        await b.drain_and_stop()
        return fake, reqs, results

    fake, reqs, results = run(body)
    seen = [(len(batch["x"]), batch["x"].shape[1:], batch["x"].dtype) for batch in fake.batches]
    assert seen == [(4, (3,), np.float32), (2, (4,), np.float32), (1, (3,), np.float64)]
    for r, out in zip(reqs, results):
        assert out["y"].dtype == r["x"].dtype
        np.testing.assert_array_equal(out["y"], expected(r))


def test_requests_with_different_inputs_never_share_a_batch():
    """An optional input (an n-gram model's `candidates`) sent by some requests and not by others, or with
    another trailing shape, splits them into batches of one kind each."""
    def with_c(n: int, start: float, k: int) -> dict[str, np.ndarray]:
        return rows(n, start) | {"c": np.full((n, k), start, np.int64)}

    async def body():
        fake = FakeModel()
        b = make_batcher(fake, max_batch_size=16, max_delay_ms=5)
        reqs = [rows(1, 0), with_c(2, 10, 1), rows(2, 20), with_c(1, 30, 1), with_c(1, 40, 3)]
        results = await asyncio.gather(*(b.submit(r, timeout_s=5) for r in reqs))
        await b.drain_and_stop()
        return fake, reqs, results

    fake, reqs, results = run(body)
    seen = [(sorted(batch), len(batch["x"]), batch["c"].shape[1:] if "c" in batch else None) for batch in fake.batches]
    assert seen == [(["x"], 3, None), (["c", "x"], 3, (1,)), (["c", "x"], 1, (3,))]
    for r, out in zip(reqs, results):
        np.testing.assert_array_equal(out["y"], expected(r))


def test_each_request_gets_exactly_its_own_rows_back():
    async def body():
        fake = FakeModel()
        b = make_batcher(fake, max_batch_size=64, max_delay_ms=5)
        sizes = [1, 3, 2, 5, 1, 4, 2]
        reqs = [rows(n, start=1000 * i) for i, n in enumerate(sizes)]
        results = await asyncio.gather(*(b.submit(r, timeout_s=5) for r in reqs))
        await b.drain_and_stop()
        return fake, reqs, results

    fake, reqs, results = run(body)
    assert fake.sizes == [18]  # one batch held all of them ...
    for r, out in zip(reqs, results):  # ... and each got back its own slice, in its own order
        assert out["y"].shape == r["x"].shape
        np.testing.assert_array_equal(out["y"], expected(r))


# -- back-pressure, deadlines, failures ------------------------------------------------------------------

def test_full_queue_raises_overloaded():
    async def body():
        fake = FakeModel(gated=True)
        b = make_batcher(fake, max_batch_size=1, max_queue=2)
        first = asyncio.create_task(b.submit(rows(1, 0), timeout_s=5))
        await fake.wait_started()  # the first request is running; the next two wait in the queue
        queued = [asyncio.create_task(b.submit(rows(1, i), timeout_s=5)) for i in (10, 20)]
        await asyncio.sleep(0.01)
        assert b.depth == 2
        with pytest.raises(Overloaded) as info:
            await b.submit(rows(1, 30), timeout_s=5)
        fake.gate.set()
        results = await asyncio.gather(first, *queued)
        await b.drain_and_stop()
        return fake, info.value, results

    fake, exc, results = run(body)
    assert exc.status == 503 and exc.retry_after_s >= 1
    assert "queued" in str(exc)
    assert [float(out["y"][0, 0]) for out in results] == [1.0, 101.0, 201.0]
    assert fake.sizes == [1, 1, 1]  # the refused request never reached the model


def test_request_past_its_deadline_is_dropped_before_running():
    async def body():
        fake = FakeModel(gated=True)
        b = make_batcher(fake, max_batch_size=1)
        first = asyncio.create_task(b.submit(rows(1, 0), timeout_s=5))
        await fake.wait_started()
        late = asyncio.create_task(b.submit(rows(1, 777), timeout_s=0.01))
        await asyncio.sleep(0.1)  # its deadline passes while it waits behind the running batch
        fake.gate.set()
        out = await first
        with pytest.raises(DeadlineExceeded) as info:
            await late
        await b.drain_and_stop()
        return fake, out, info.value

    fake, out, exc = run(body)
    assert exc.status == 504 and "deadline" in str(exc)
    np.testing.assert_array_equal(out["y"], expected(rows(1, 0)))
    assert len(fake.batches) == 1
    assert 777 not in fake.batches[0]["x"]  # the expired request never reached the model


def test_a_model_that_fails_fails_each_request_with_a_500_and_the_worker_serves_on():
    async def body():
        fake = FakeModel(fail=RuntimeError("boom: the model fell over\nat line 3 of something internal"))
        b = make_batcher(fake, max_batch_size=8)
        outcomes = await asyncio.gather(*(b.submit(rows(1, i), timeout_s=5) for i in range(3)),
                                        return_exceptions=True)
        fake.fail = None  # the worker survives the failure and serves the next batch
        after = await b.submit(rows(1, 5), timeout_s=5)
        await b.drain_and_stop()
        return fake, outcomes, after

    fake, outcomes, after = run(body)
    assert fake.sizes[0] == 3 and fake.sizes[-1] == 1  # the batch, then its halves, then the next request
    for o in outcomes:
        assert isinstance(o, ModelFailed) and o.status == 500
        assert str(o).endswith("failed on this request: RuntimeError: boom: the model fell over")
    np.testing.assert_array_equal(after["y"], expected(rows(1, 5)))


@pytest.mark.parametrize("bad", [[0], [7], [2, 5], [0, 1, 2, 3, 4, 5, 6, 7]])
def test_only_the_requests_that_make_a_batch_fail_fail(bad):
    """A batch of 8 with poisoned requests at positions `bad`: every other request gets its own answer."""
    poison = 666.0

    async def body():
        fake = FakeModel(gated=True, poison=poison)
        b = make_batcher(fake, max_batch_size=8)
        blocker = asyncio.ensure_future(b.submit(rows(1, 1000), timeout_s=5))
        await fake.wait_started()  # the next 8 queue up while the model is busy, and form one batch
        inputs = [rows(1, 10 * i) for i in range(8)]
        for i in bad:
            inputs[i]["x"][0, 1] = poison
        pending = [asyncio.ensure_future(b.submit(x, timeout_s=5)) for x in inputs]
        await asyncio.sleep(0.01)
        fake.gate.set()
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        await blocker
        await b.drain_and_stop()
        return fake, inputs, outcomes

    fake, inputs, outcomes = run(body)
    assert fake.sizes[1] == 8  # they did share a batch
    for i, (x, o) in enumerate(zip(inputs, outcomes)):
        if i in bad:
            assert isinstance(o, ModelFailed), (i, o)
        else:
            np.testing.assert_array_equal(o["y"], expected(x))
    assert len(fake.batches) <= 2 + 2 * len(bad) * 3  # halving: about 2k log2(8) extra runs at most


def test_wrong_number_of_output_rows_fails_every_request_with_batch_count_error():
    async def body():
        fake = FakeModel(extra_rows=1)
        b = make_batcher(fake, max_batch_size=8)
        outcomes = await asyncio.gather(*(b.submit(rows(1, i), timeout_s=5) for i in range(3)),
                                        return_exceptions=True)
        await b.drain_and_stop()
        return fake, outcomes

    fake, outcomes = run(body)
    assert fake.sizes == [3]
    assert len(outcomes) == 3 and all(isinstance(o, BatchCountError) for o in outcomes)
    assert "4" in str(outcomes[0]) and "3" in str(outcomes[0])  # returned 4 rows for a batch of 3


# -- variable-length (padded) inputs -------------------------------------------------------------------

def padded_batcher(max_batch_size: int, **kw) -> tuple[list[dict], DynamicBatcher]:
    """A batcher padding `ids` with -1 and `mask` with 0; its model returns each row's sum of real ids."""
    seen = []

    def run_fn(feeds):
        seen.append({k: v.copy() for k, v in feeds.items()})
        return {"total": (feeds["ids"] * feeds["mask"]).sum(axis=1)}

    b = DynamicBatcher(run_fn, model=f"fake-{uuid.uuid4().hex[:8]}", max_batch_size=max_batch_size,
                       max_delay_ms=kw.pop("max_delay_ms", 5.0), max_queue=64, pad={"ids": -1, "mask": 0}, **kw)
    b.start()
    return seen, b


def text(length: int, start: int = 1) -> dict[str, np.ndarray]:
    ids = np.arange(start, start + length, dtype=np.int64)[None]  # (1, T)
    return {"ids": ids, "mask": np.ones_like(ids)}


def test_padded_inputs_of_any_length_share_a_batch_padded_to_its_longest():
    async def body():
        seen, b = padded_batcher(8)
        reqs = [text(3), text(5, 10), text(2, 20)]
        outs = await b.submit_many(reqs, timeout_s=5)
        await b.drain_and_stop()
        return seen, reqs, outs

    seen, reqs, outs = run(body)
    assert len(seen) == 1 and seen[0]["ids"].shape == (3, 5)  # the longest of the three, nothing more
    assert seen[0]["ids"][0].tolist() == [1, 2, 3, -1, -1] and seen[0]["mask"][2].tolist() == [1, 1, 0, 0, 0]
    assert [int(o["total"][0]) for o in outs] == [int(r["ids"].sum()) for r in reqs]


def test_when_more_rows_wait_than_fit_a_batch_takes_the_lengths_nearest_the_oldest():
    async def body():
        seen, b = padded_batcher(2)
        gate, real = threading.Event(), b.run_fn
        b.run_fn = lambda feeds: (gate.wait(10), real(feeds))[1]
        hold = asyncio.ensure_future(b.submit(text(1), timeout_s=5))  # keeps the model busy while the rest queue
        await asyncio.sleep(0.05)
        lengths = [2, 9, 3, 8]  # arrival order; FIFO would pad 2 to 9 and 3 to 8
        outs = asyncio.ensure_future(b.submit_many([text(n) for n in lengths], timeout_s=5))
        await asyncio.sleep(0.05)
        gate.set()
        await hold
        await outs
        await b.drain_and_stop()
        return seen

    seen = run(body)
    assert [s["ids"].shape for s in seen[1:]] == [(2, 3), (2, 9)]  # {2, 3} then {9, 8}: 2 padding positions
    assert int((seen[1]["mask"] == 0).sum() + (seen[2]["mask"] == 0).sum()) == 2


def test_padded_inputs_that_disagree_on_their_length_are_bad_input():
    async def body():
        _, b = padded_batcher(4)
        try:
            await b.submit({"ids": np.ones((1, 3), np.int64), "mask": np.ones((1, 4), np.int64)}, timeout_s=5)
        finally:
            await b.drain_and_stop()

    with pytest.raises(BadInput, match="length"):
        run(body)


# -- draining -------------------------------------------------------------------------------------------

def test_drain_and_stop_lets_queued_requests_finish():
    async def body():
        fake = FakeModel(delay=0.02)
        b = make_batcher(fake, max_batch_size=1)
        tasks = [asyncio.create_task(b.submit(rows(1, 10 * i), timeout_s=5)) for i in range(5)]
        await asyncio.sleep(0)  # all five are queued
        await b.drain_and_stop()
        done = [t.done() for t in tasks]
        return fake, done, [t.result() for t in tasks]

    fake, done, results = run(body)
    assert all(done) and fake.sizes == [1] * 5
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out["y"], expected(rows(1, 10 * i)))


def test_drain_and_stop_while_a_batch_waits_for_company_finishes_it():
    async def body():
        fake, arrivals = FakeModel(), Arrivals()
        b = make_batcher(fake, max_batch_size=8, max_delay_ms=300, arrivals=arrivals)
        arrivals.enter(b.model)  # company on its way that never comes
        waiting = asyncio.create_task(b.submit(rows(1, 50), timeout_s=5))
        await _until(lambda: b.depth == 0 and waiting.done() is False)  # taken: waiting for company
        await asyncio.sleep(0.02)
        assert not waiting.done()
        await asyncio.wait_for(b.drain_and_stop(), 3)
        return await asyncio.wait_for(waiting, 1)

    out = run(body)
    np.testing.assert_array_equal(out["y"], expected(rows(1, 50)))


def test_submit_after_drain_and_stop_fails_fast_instead_of_hanging():
    async def body():
        b = make_batcher(FakeModel())
        await b.drain_and_stop()
        try:
            await asyncio.wait_for(b.submit(rows(1, 0), timeout_s=5), 1.0)
        except asyncio.TimeoutError:
            return "hung"
        except ServiceError as exc:
            return exc
        return "ran"

    outcome = run(body)
    assert isinstance(outcome, ServiceError) and outcome.status == 503, outcome


# -- through the app: 503 + Retry-After, 504 -----------------------------------------------------------

def _gate_model(app, name: str) -> tuple[threading.Event, threading.Event]:
    return gate_model(app.state.repository.get(name))


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.005)


def test_full_queue_is_503_with_retry_after_through_the_app(make_repo, serve):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        gate, entered = _gate_model(app, "lin")
        batcher = app.state.repository.get("lin").batcher

        async def post():
            return await client.post("/v2/models/lin/infer", json=infer_json(images(1)))

        running = asyncio.create_task(post())
        await _until(entered.is_set)  # the first request holds the model ...
        queued = asyncio.create_task(post())  # ... the second fills the queue of 1 ...
        await _until(lambda: batcher.depth == 1)
        refused = await post()  # ... and the third is turned away at once
        gate.set()
        return refused, await running, await queued

    refused, first, second = serve(repo.root, body, max_queue=1, max_delay_ms=0)
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert "queued" in refused.json()["error"]
    assert first.status_code == 200 and second.status_code == 200


def test_request_past_its_deadline_is_504_through_the_app(make_repo, serve):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        gate, entered = _gate_model(app, "lin")
        running = asyncio.create_task(client.post("/v2/models/lin/infer", json=infer_json(images(1))))
        await _until(entered.is_set)
        late = asyncio.create_task(client.post("/v2/models/lin/infer", json=infer_json(images(1, seed=1))))
        await asyncio.sleep(0.3)  # past request_timeout_s while it waits
        gate.set()
        return await running, await late

    first, late = serve(repo.root, body, request_timeout_s=0.1, max_delay_ms=0)
    assert first.status_code == 200
    assert late.status_code == 504 and "deadline" in late.json()["error"]


def test_arrivals_count_every_v2_request_until_it_queues_or_fails(make_repo, serve):
    """The HTTP layer's count goes back to nothing after good, bad and unknown-model requests."""
    async def body(client, app):
        x = images(1)
        seen = []
        loaded = app.state.repository.get("lin")
        real = loaded.batcher.run_fn

        def spy(feeds):  # while the model runs, the request is queued: no longer on its way
            seen.append(app.state.repository.arrivals.on_the_way("lin"))
            return real(feeds)

        loaded.batcher.run_fn = spy
        codes = [(await client.post(path, **kw)).status_code for path, kw in (
            ("/v2/models/lin/infer", {"json": infer_json(x)}), ("/v2/models/lin/infer", {"content": b"{bad"}),
            ("/v2/models/nope/infer", {"json": infer_json(x)}), ("/v2/models/lin/versions/7/infer", {"json": {}}))]
        return codes, seen, len(app.state.repository.arrivals)

    codes, seen, left = serve(make_repo(("lin", 1)).root, body)
    assert codes == [200, 400, 404, 404] and seen == [0] and left == 0


def test_a_batch_shape_that_ran_fast_runs_on_the_event_loop_and_a_new_or_slow_one_in_the_model_thread(monkeypatch):
    from service.runtime.engine import batcher as batcher_module

    # A generous bound, so that a busy test machine cannot push a fast run over it.
    monkeypatch.setattr(batcher_module, "INLINE_RUN_S", 0.05)
    on_loop: list[tuple[tuple, bool]] = []

    def model(feeds):
        x = feeds["x"]
        on_loop.append((x.shape, threading.current_thread() is threading.main_thread()))
        if x.shape[1] == 3:
            time.sleep(0.1)  # slower than the bound: this shape never leaves the model's thread
        return {"y": x * 2}

    async def main():
        b = DynamicBatcher(model, model="m", max_batch_size=8, max_delay_ms=1.0, max_queue=16)
        b.start()
        for shape in [(1, 2), (1, 2), (1, 2), (1, 3), (1, 3), (2, 2), (2, 2)]:
            out = await b.submit({"x": np.ones(shape, np.float32)}, timeout_s=5)
            np.testing.assert_array_equal(out["y"], np.full(shape, 2, np.float32))
        await b.drain_and_stop()

    run(main)
    assert on_loop == [((1, 2), False), ((1, 2), True), ((1, 2), True), ((1, 3), False), ((1, 3), False),
                       ((2, 2), False), ((2, 2), True)]


def _two_ms_model_and_idle_bounds(monkeypatch) -> tuple:
    """A model of 2 ms per call, recording (rows, ran on the loop) per call, and a batcher for it, under bounds a
    busy machine cannot move a run across: 2 ms is slow for the ordinary inline bound, well within the idle one."""
    from service.runtime.engine import batcher as batcher_module

    monkeypatch.setattr(batcher_module, "INLINE_RUN_S", 1e-6)
    monkeypatch.setattr(batcher_module, "IDLE_INLINE_RUN_S", 0.5)
    calls: list[tuple[int, bool]] = []

    def model(feeds):
        calls.append((len(feeds["x"]), threading.current_thread() is threading.main_thread()))
        time.sleep(0.002)
        return {"y": feeds["x"] + 1}

    def make(arrivals):
        b = DynamicBatcher(model, model="m", max_batch_size=8, max_delay_ms=1.0, max_queue=16, arrivals=arrivals)
        b.start()
        return b

    return make, calls


def test_a_lone_request_on_an_idle_server_runs_inline_up_to_the_idle_bound_and_in_the_thread_when_not_idle(
        monkeypatch):
    from service.runtime.engine.arrivals import Arrivals

    make, calls = _two_ms_model_and_idle_bounds(monkeypatch)

    async def main():
        arrivals = Arrivals()
        b = make(arrivals)
        x = {"x": np.zeros((1, 2), np.float32)}
        for _ in range(3):  # unmeasured -> thread; then lone on an idle server -> on the loop
            np.testing.assert_array_equal((await b.submit(x, timeout_s=5))["y"], np.ones((1, 2), np.float32))
        arrivals.enter("another-model")  # a request on its way elsewhere: the server is not idle
        await b.submit(x, timeout_s=5)
        arrivals.leave("another-model")
        await b.submit(x, timeout_s=5)
        await b.drain_and_stop()

    run(main)
    assert [on_loop for _, on_loop in calls] == [False, True, True, False, True]


def test_a_batch_of_several_requests_on_an_otherwise_idle_server_runs_inline_too(monkeypatch):
    """64 closed-loop clients form one batch once the loop has parsed them all: nothing is left for the loop
    to do while it runs, so it runs there (no hand-off to the thread and back) when its shape is cheap."""
    from service.runtime.engine.arrivals import Arrivals

    make, calls = _two_ms_model_and_idle_bounds(monkeypatch)

    async def main():
        arrivals = Arrivals()
        b = make(arrivals)
        x = np.zeros((1, 2), np.float32)

        async def three():  # queued together, before the worker runs: one batch of 3 rows
            outs = await asyncio.gather(*(b.submit({"x": x + i}, timeout_s=5) for i in range(3)))
            for i, out in enumerate(outs):  # each gets its own row back
                np.testing.assert_array_equal(out["y"], x + i + 1)

        await three()  # not measured yet -> thread
        await three()  # measured, server otherwise idle -> on the loop
        arrivals.enter("another-model")  # a request on its way elsewhere: the loop has work, -> thread
        await three()
        arrivals.leave("another-model")
        await b.drain_and_stop()

    run(main)
    assert calls == [(3, False), (3, True), (3, False)]


def test_a_fast_request_waits_for_company_on_its_way_instead_of_running_at_once(monkeypatch):
    from service.runtime.engine import batcher as batcher_module
    from service.runtime.engine.arrivals import Arrivals

    monkeypatch.setattr(batcher_module, "INLINE_RUN_S", 0.5)  # every run counts as fast
    rows_per_call: list[int] = []

    def model(feeds):
        rows_per_call.append(len(feeds["x"]))
        return {"y": feeds["x"] + 1}

    async def main():
        arrivals = Arrivals()
        b = DynamicBatcher(model, model="m", max_batch_size=8, max_delay_ms=2000, max_queue=16, arrivals=arrivals)
        b.start()
        x = {"x": np.zeros((1, 2), np.float32)}
        await b.submit(x, timeout_s=5)  # measured: fast from now on
        arrivals.enter("m")  # another request for the model is on its way
        first = asyncio.ensure_future(b.submit(x, timeout_s=5))
        await asyncio.sleep(0.02)
        assert not first.done()  # not run at once: its batch waits for the one on its way
        arrivals.leave("m")
        await b.submit(x, timeout_s=5)
        await first
        await b.drain_and_stop()

    run(main)
    assert rows_per_call == [1, 2]
