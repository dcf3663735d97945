"""/metrics after real traffic. The metrics are module-level globals shared by every test in the process,
so each test serves models under names of its own and compares scrapes taken before and after."""

from __future__ import annotations

import asyncio
import re
import uuid

from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import gate_model, images, infer_json

INFER = "/v2/models/{model}/infer"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted label pairs) -> value, for every sample of a scrape."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape: dict, name: str, **labels) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def scrape(client) -> dict:
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    return samples(resp.text)


def test_requests_total_counts_by_model_endpoint_and_code(make_repo, serve):
    m = unique("req")
    repo = make_repo((m, 1))

    async def body(client, app):
        before = await scrape(client)
        for i in range(3):
            assert (await client.post(f"/v2/models/{m}/infer", json=infer_json(images(1, seed=i)))).status_code == 200
        for _ in range(2):
            assert (await client.post(f"/v2/models/{m}/infer", json=infer_json(images(9)))).status_code == 400
        assert (await client.post(f"/v2/models/{m}/versions/1/infer", json=infer_json(images(1)))).status_code == 200
        assert (await client.get(f"/v2/models/{m}")).status_code == 200
        assert (await client.get(f"/v2/models/{m}-nope/ready")).status_code == 404
        return before, await scrape(client)

    before, after = serve(repo.root, body)
    total = "zooserve_requests_total"
    assert delta(before, after, total, model=m, endpoint=INFER, code="200") == 3
    assert delta(before, after, total, model=m, endpoint=INFER, code="400") == 2
    assert delta(before, after, total, model=m, endpoint="/v2/models/{model}/versions/{version}/infer", code="200") == 1
    assert delta(before, after, total, model=m, endpoint="/v2/models/{model}", code="200") == 1
    assert sum(delta(before, after, total, model=label, endpoint="/v2/models/{model}/ready", code="404")
               for label in (f"{m}-nope", "", "unknown")) == 1
    assert delta(before, after, total, model="", endpoint="/metrics", code="200") == 1  # the first scrape
    # and the latency histogram saw the same requests
    assert delta(before, after, "zooserve_request_duration_seconds_count", model=m, endpoint=INFER) == 5
    assert delta(before, after, "zooserve_request_duration_seconds_sum", model=m, endpoint=INFER) > 0


def test_batcher_histograms(make_repo, serve):
    m = unique("batch")
    repo = make_repo((m, 1))

    async def body(client, app):
        before = await scrape(client)
        for n in (1, 2, 3):  # one at a time: each request is a batch of its own
            assert (await client.post(f"/v2/models/{m}/infer", json=infer_json(images(n)))).status_code == 200
        return before, await scrape(client)

    before, after = serve(repo.root, body)
    assert delta(before, after, "zooserve_batch_size_count", model=m) == 3
    assert delta(before, after, "zooserve_batch_size_sum", model=m) == 6  # rows
    assert delta(before, after, "zooserve_batch_size_bucket", model=m, le="1.0") == 1
    assert delta(before, after, "zooserve_batch_size_bucket", model=m, le="2.0") == 2
    assert delta(before, after, "zooserve_batch_size_bucket", model=m, le="4.0") == 3
    for name in ("zooserve_queue_wait_seconds", "zooserve_inference_duration_seconds"):
        assert delta(before, after, f"{name}_count", model=m) == 3, name
        assert delta(before, after, f"{name}_sum", model=m) >= 0, name
        assert delta(before, after, f"{name}_bucket", model=m, le="+Inf") == 3, name
    assert value(after, "zooserve_queue_depth", model=m) == 0  # nothing left waiting


def test_concurrent_requests_show_up_as_larger_batches(make_repo, serve):
    m = unique("conc")
    repo = make_repo((m, 1))

    async def body(client, app):
        before = await scrape(client)
        loaded = app.state.repository.get(m)
        gate, entered = gate_model(loaded)
        first = asyncio.create_task(client.post(f"/v2/models/{m}/infer", json=infer_json(images(1))))
        while not entered.is_set():
            await asyncio.sleep(0.005)
        rest = [asyncio.create_task(client.post(f"/v2/models/{m}/infer", json=infer_json(images(1, seed=i))))
                for i in range(4)]
        while loaded.batcher.depth < 4:  # these four queue up behind the running batch ...
            await asyncio.sleep(0.005)
        gate.set()  # ... and then run together
        assert all(r.status_code == 200 for r in await asyncio.gather(first, *rest))
        return before, await scrape(client)

    before, after = serve(repo.root, body)
    assert delta(before, after, "zooserve_batch_size_count", model=m) == 2
    assert delta(before, after, "zooserve_batch_size_sum", model=m) == 5
    assert delta(before, after, "zooserve_batch_size_bucket", model=m, le="1.0") == 1  # the lone first request
    assert delta(before, after, "zooserve_batch_size_bucket", model=m, le="2.0") == 1
    assert delta(before, after, "zooserve_batch_size_bucket", model=m, le="4.0") == 2  # + the four together
    assert delta(before, after, "zooserve_queue_wait_seconds_count", model=m) == 5


def test_model_ready_and_load_duration(make_repo, serve):
    good, bad = unique("ready"), unique("broken")
    repo = make_repo((good, 1), (bad, 1, "corrupt"))

    async def body(client, app):
        while_serving = await scrape(client)
        await client.post(f"/v2/repository/models/{good}/unload")
        return while_serving, await scrape(client)

    serving, unloaded = serve(repo.root, body)
    assert value(serving, "zooserve_model_ready", model=good, version="1") == 1
    assert (("zooserve_model_ready", (("model", bad), ("version", "1"))) in serving
            and value(serving, "zooserve_model_ready", model=bad, version="1") == 0)
    load_s = value(serving, "zooserve_model_load_duration_seconds", model=good, version="1")
    assert 0 < load_s < 30
    assert value(unloaded, "zooserve_model_ready", model=good, version="1") == 0


def test_rejected_requests_are_counted_too(make_repo, serve):
    m = unique("auth")
    repo = make_repo((m, 1))

    async def body(client, app):
        before = await scrape(client)  # /metrics needs no key
        assert (await client.get(f"/v2/models/{m}")).status_code == 401  # no key
        big = await client.post(f"/v2/models/{m}/infer", content=b" " * 4096, headers={"X-API-Key": "k"})
        assert big.status_code == 413
        return before, await scrape(client)

    before, after = serve(repo.root, body, api_key="k", max_body_bytes=2048)
    # Turned away before routing, so they have no model or route template, but they are counted.
    assert delta(before, after, "zooserve_requests_total", model="", endpoint="unmatched", code="401") == 1
    assert delta(before, after, "zooserve_requests_total", model="", endpoint="unmatched", code="413") == 1


def test_requests_for_unknown_models_do_not_create_new_series(make_repo, serve):
    repo = make_repo((unique("card"), 1))

    junk = [unique("junk") for _ in range(20)]

    async def body(client, app):
        before = await scrape(client)
        for name in junk:
            assert (await client.post(f"/v2/models/{name}/infer", json={})).status_code == 404
        return before, await scrape(client)

    before, after = serve(repo.root, body)
    new = {key for key in set(after) - set(before) if key[0].startswith("zooserve_request")}
    assert not [key for key in new if any(value in junk for _, value in key[1])]
    # On the infer route, at most one new label set per metric (model="" for all 20 names; none if an earlier
    # test made it): a histogram's buckets, sum and count, and a counter's _created, belong to one set.
    label_sets = {(re.sub(r"_(bucket|sum|count|created|total)$", "", name), tuple(kv for kv in labels if kv[0] != "le"))
                  for name, labels in new if ("endpoint", "/v2/models/{model}/infer") in labels}
    assert len(label_sets) <= 2, label_sets


def test_inflight_gauge_returns_to_where_it_was(make_repo, serve):
    m = unique("inflight")
    repo = make_repo((m, 1))

    async def body(client, app):
        before = await scrape(client)
        await asyncio.gather(*(client.post(f"/v2/models/{m}/infer", json=infer_json(images(1, seed=i)))
                               for i in range(5)))
        return before, await scrape(client)

    before, after = serve(repo.root, body)
    # each scrape counts itself as in flight; nothing else may be left over
    assert value(after, "zooserve_inflight_requests") == value(before, "zooserve_inflight_requests")


def test_every_metric_is_exposed_with_help_and_type(make_repo, serve):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        await client.post("/v2/models/lin/infer", json=infer_json(images(1)))
        return await client.get("/metrics")

    resp = serve(repo.root, body)
    assert resp.headers["content-type"].startswith("text/plain")
    types = {f.name: f.type for f in text_string_to_metric_families(resp.text)}
    assert {name: types.get(name) for name in EXPECTED_TYPES} == EXPECTED_TYPES


EXPECTED_TYPES = {
    "zooserve_requests": "counter", "zooserve_request_duration_seconds": "histogram",
    "zooserve_batch_size": "histogram", "zooserve_queue_wait_seconds": "histogram", "zooserve_queue_depth": "gauge",
    "zooserve_inference_duration_seconds": "histogram", "zooserve_model_ready": "gauge",
    "zooserve_model_load_duration_seconds": "gauge", "zooserve_inflight_requests": "gauge",
}
