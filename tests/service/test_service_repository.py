"""The model repository: broken versions are isolated, version selection, batching off for fixed batch
axes, reload/unload/load at run time (also under load), polling, and execution-provider selection."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
import warnings

import numpy as np
import orjson
import pytest

from service.runtime.engine.session import select_providers
from tests.service.conftest import gate_model, images, infer_json

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"

# kind -> words the UNAVAILABLE reason must contain, so an operator can tell what is wrong.
BROKEN = {
    "corrupt": ["model.onnx", "onnxruntime cannot load"],
    "missing_onnx": ["model.onnx", "missing"],
    "bad_card_json": ["model.json", "not a valid model card", "JSON"],
    "invalid_card": ["model.json", "3 labels"],
    "wrong_input_name": ['\"image\"', '\"input\"'],
    "wrong_datatype": ["INT64", "FP32"],
    "wrong_shape": ["[-1, 1, 32, 32]", "[-1, 1, 28, 28]"],
    "wrong_card_version": ["card for bad/101"],
}


async def _infer(client, model: str, x: np.ndarray, version: int | None = None):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    return await client.post(path, json=infer_json(x))


def _logits(resp) -> np.ndarray:
    out = resp.json()["outputs"][0]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


# -- broken versions -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(BROKEN))
def test_broken_model_is_unavailable_with_a_reason_while_a_good_one_serves(make_repo, serve, kind):
    repo = make_repo(("good", 1), ("bad", 1, kind))
    x = images(2)

    async def body(client, app):
        return (await client.get("/v2/models/bad"), await client.get("/v2/models/bad/ready"),
                await _infer(client, "bad", x), await _infer(client, "good", x),
                await client.get("/v2/health/ready"), await client.get("/v1/models"))

    meta, ready, bad_infer, good_infer, health, listing = serve(repo.root, body)
    assert meta.status_code == 200
    assert meta.json()["state"] == "UNAVAILABLE"
    for word in BROKEN[kind]:
        assert word in meta.json()["reason"], (word, meta.json()["reason"])
    assert "inputs" not in meta.json()  # nothing loaded, nothing to describe
    for resp in (meta, ready, bad_infer, listing):  # files are named, the server's paths never shown
        assert str(repo.root) not in resp.text and "/tmp" not in resp.text, resp.text
    assert ready.status_code == 503 and BROKEN[kind][0] in ready.json()["error"]
    assert bad_infer.status_code == 503 and "UNAVAILABLE" in bad_infer.json()["error"]
    assert good_infer.status_code == 200
    np.testing.assert_allclose(_logits(good_infer), repo.reference("good", 1, {"input": x})["logits"],
                               rtol=1e-5, atol=1e-5)
    assert health.status_code == 200  # one model serves: the server is ready
    states = {(m["id"], m["state"]) for m in listing.json()["data"]}
    assert states == {("good", "READY"), ("bad", "UNAVAILABLE")}


def test_model_that_fails_at_run_time_is_unavailable_and_does_not_stop_the_server(make_repo, serve):
    repo = make_repo(("good", 1), ("boom", 1, "runtime_error"))

    async def body(client, app):
        return await client.get("/v2/models/boom"), await _infer(client, "good", images(1))

    try:
        meta, good = serve(repo.root, body)
    except Exception as exc:  # noqa: BLE001 - what matters is that the server did not start
        raise AssertionError(f"the server did not start: {type(exc).__name__}: {exc}") from exc
    assert meta.json()["state"] == "UNAVAILABLE" and "Gather" in meta.json()["reason"]
    assert good.status_code == 200


def test_artifact_that_does_not_match_the_card_checksum_is_unavailable(make_repo, serve):
    repo = make_repo(("good", 1), ("tampered", 1, "tampered"))

    async def body(client, app):
        return await client.get("/v2/models/tampered")

    meta = serve(repo.root, body)
    assert meta.json()["state"] == "UNAVAILABLE" and "sha256" in meta.json()["reason"]


# -- which versions load ----------------------------------------------------------------------------------

def test_newest_version_loads_by_default(make_repo, serve):
    repo = make_repo(("lin", 1), ("lin", 2), ("lin", 3))
    x = images(3)

    async def body(client, app):
        return (await client.get("/v2/models/lin"), await _infer(client, "lin", x),
                await _infer(client, "lin", x, version=1), await client.post("/v2/repository/index"))

    meta, latest, v1, index = serve(repo.root, body)
    assert meta.json()["versions"] == ["3"] and meta.json()["state"] == "READY"
    assert latest.status_code == 200 and latest.json()["model_version"] == "3"
    np.testing.assert_allclose(_logits(latest), repo.reference("lin", 3, {"input": x})["logits"], rtol=1e-5, atol=1e-5)
    assert v1.status_code == 404 and "version 1" in v1.json()["error"]
    rows = {(r["version"], r["state"]) for r in index.json() if r["name"] == "lin"}
    assert rows == {("1", "UNAVAILABLE"), ("2", "UNAVAILABLE"), ("3", "READY")}


def test_model_versions_setting_pins_versions(make_repo, serve):
    repo = make_repo(("lin", 1), ("lin", 2), ("lin", 3))
    x = images(2)

    async def body(client, app):
        return (await client.get("/v2/models/lin"), await _infer(client, "lin", x),
                await _infer(client, "lin", x, version=1), await _infer(client, "lin", x, version=3),
                await client.get("/v2/models/lin/versions/1/ready"))

    meta, default, v1, v3, ready1 = serve(repo.root, body, model_versions={"lin": [1, 2]})
    assert meta.json()["versions"] == ["1", "2"]
    assert default.json()["model_version"] == "2"  # the newest of the pinned versions
    assert v1.status_code == 200 and v1.json()["model_version"] == "1"
    np.testing.assert_allclose(_logits(v1), repo.reference("lin", 1, {"input": x})["logits"], rtol=1e-5, atol=1e-5)
    assert not np.allclose(_logits(v1), _logits(default))  # really two different models
    assert v3.status_code == 404
    assert ready1.status_code == 200 and ready1.json()["ready"] is True


def test_newest_ready_version_serves_when_the_newest_is_broken(make_repo, serve):
    repo = make_repo(("lin", 1), ("lin", 2, "corrupt"))

    async def body(client, app):
        return await _infer(client, "lin", images(1)), await client.get("/v2/models/lin/versions/2")

    resp, v2 = serve(repo.root, body, model_versions={"lin": [1, 2]})
    assert resp.status_code == 200 and resp.json()["model_version"] == "1"
    assert v2.json()["state"] == "UNAVAILABLE"


def test_fixed_first_axis_model_loads_with_batching_off(make_repo, serve):
    repo = make_repo(("fixed", 1, "fixed_batch"))

    async def body(client, app):
        loaded = app.state.repository.get("fixed")
        sizes, real = [], loaded.batcher.run_fn

        def spy(feeds):
            sizes.append(len(feeds["input"]))
            return real(feeds)

        loaded.batcher.run_fn = spy
        xs = [images(1, seed=i) for i in range(6)]
        many = await asyncio.gather(*(_infer(client, "fixed", x) for x in xs))
        two_rows = await _infer(client, "fixed", images(2))
        return await client.get("/v2/models/fixed"), xs, many, two_rows, sizes

    meta, xs, many, two_rows, sizes = serve(repo.root, body, max_delay_ms=50)
    doc = meta.json()
    assert doc["state"] == "READY" and doc["inputs"][0]["shape"] == [1, 1, 28, 28]
    assert doc["parameters"]["max_batch_size"] == 1 and doc["parameters"]["max_delay_ms"] == 0
    assert all(r.status_code == 200 for r in many)
    assert sizes == [1] * 6  # concurrent requests were never batched together
    for x, r in zip(xs, many):
        np.testing.assert_allclose(_logits(r), repo.reference("fixed", 1, {"input": x})["logits"], rtol=1e-5, atol=1e-5)
    assert two_rows.status_code == 400 and "shape" in two_rows.json()["error"]


# -- load / unload / reload at run time --------------------------------------------------------------------

def test_reload_lets_requests_on_the_old_session_finish(make_repo, serve):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        old = app.state.repository.get("lin")
        gate, entered = gate_model(old)
        xs = [images(1, seed=i) for i in range(4)]
        in_flight = [asyncio.create_task(_infer(client, "lin", x)) for x in xs]
        while not (entered.is_set() and old.batcher.depth == 3):  # one in the model, three queued behind it
            await asyncio.sleep(0.005)
        reload = asyncio.create_task(client.post("/v2/repository/models/lin/load"))
        await asyncio.sleep(0.2)
        assert not reload.done()  # the reload waits for the old session to drain
        gate.set()
        results = await asyncio.gather(*in_flight)
        new = app.state.repository.get("lin")
        return xs, results, await reload, new is not old, await _infer(client, "lin", xs[0])

    xs, results, reload, swapped, after = serve(repo.root, body, max_batch_size=1, max_delay_ms=0)
    assert reload.status_code == 200 and reload.json()["versions"]["1"]["state"] == "READY"
    assert swapped
    for x, r in zip(xs, results):
        assert r.status_code == 200
        np.testing.assert_allclose(_logits(r), repo.reference("lin", 1, {"input": x})["logits"], rtol=1e-5, atol=1e-5)
    assert after.status_code == 200


def test_reload_under_load_every_request_succeeds(make_repo, serve):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        repository = app.state.repository
        real_load = repository._load_blocking

        def slow_load(name, version):  # a real model takes a while to load; 100 ms makes the window certain
            time.sleep(0.1)
            return real_load(name, version)

        repository._load_blocking = slow_load
        stop, codes = False, []

        async def client_loop(seed):
            for _ in range(2000):  # bounded, so a regression fails instead of spinning forever
                if stop:
                    break
                r = await _infer(client, "lin", images(1, seed=seed))
                codes.append((r.status_code, r.text[:100] if r.status_code != 200 else ""))

        clients = [asyncio.create_task(client_loop(i)) for i in range(6)]
        await asyncio.sleep(0.05)
        reloads = []
        for _ in range(3):
            reloads.append((await client.post("/v2/repository/models/lin/load")).status_code)
            await asyncio.sleep(0.02)
        stop = True
        await asyncio.gather(*clients)
        return reloads, codes

    reloads, codes = serve(repo.root, body)
    assert reloads == [200, 200, 200]
    assert len(codes) > 20
    failures = [c for c in codes if c[0] != 200]
    assert not failures, f"{len(failures)} of {len(codes)} requests failed, e.g. {failures[0]}"


def test_request_whose_body_arrives_during_a_reload_is_answered(make_repo, serve):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        blob = orjson.dumps(infer_json(images(1)))
        arrived = asyncio.Event()

        async def slow_body():  # a slow client: the headers and some bytes now, the rest after the reload
            yield blob[:20]
            await arrived.wait()
            yield blob[20:]

        request = asyncio.create_task(client.post("/v2/models/lin/infer", content=slow_body()))
        await asyncio.sleep(0.05)
        reload = await client.post("/v2/repository/models/lin/load")
        arrived.set()
        try:
            resp = await asyncio.wait_for(request, 1.0)
        except asyncio.TimeoutError:
            return reload, None
        return reload, resp

    reload, resp = serve(repo.root, body)
    assert reload.status_code == 200
    assert resp is not None, "the request never got an answer"
    assert resp.status_code in (200, 503)


def test_loaded_models_are_frozen_out_of_the_gc_and_an_unloaded_version_is_still_reclaimed(make_repo, serve):
    repo = make_repo(("lin", 1), ("other", 1))

    async def body(client, app):
        frozen_after_start = gc.get_freeze_count()
        loaded = app.state.repository.get("lin")
        # A reference cycle through the unloaded version: only the cyclic GC can reclaim it, and a frozen
        # object is out of its reach unless the repository unfreezes before it collects.
        loaded.cycle = {"back": loaded}
        gone = weakref.ref(loaded)
        del loaded
        unload = await client.post("/v2/repository/models/lin/unload")
        return frozen_after_start, unload.status_code, gone() is None

    frozen, status, reclaimed = serve(repo.root, body)
    assert frozen > 0 and status == 200 and reclaimed


def test_unload_then_load(make_repo, serve):
    repo = make_repo(("lin", 1), ("other", 1))

    async def body(client, app):
        unload = await client.post("/v2/repository/models/lin/unload")
        after = (await _infer(client, "lin", images(1)), await client.get("/v2/models/lin/ready"),
                 await client.post("/v2/repository/index"), await _infer(client, "other", images(1)))
        load = await client.post("/v2/repository/models/lin/load")
        return unload, after, load, await _infer(client, "lin", images(1)), await client.get("/v2/models/lin/ready")

    unload, (infer_after, ready_after, index, other), load, infer_again, ready_again = serve(repo.root, body)
    assert unload.status_code == 200 and unload.json() == {"name": "lin", "state": "UNAVAILABLE"}
    assert infer_after.status_code in (404, 503) and "lin" in infer_after.json()["error"]
    assert ready_after.status_code in (404, 503)
    assert {(r["name"], r["state"]) for r in index.json()} == {("lin", "UNAVAILABLE"), ("other", "READY")}
    assert other.status_code == 200  # unloading one model leaves the others alone
    assert load.status_code == 200 and load.json()["versions"]["1"]["state"] == "READY"
    assert infer_again.status_code == 200 and ready_again.status_code == 200


def test_unloaded_model_is_503_not_ready_and_its_metadata_says_unavailable(make_repo, serve):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        await client.post("/v2/repository/models/lin/unload")
        return await _infer(client, "lin", images(1)), await client.get("/v2/models/lin")

    infer, meta = serve(repo.root, body)
    assert infer.status_code == 503
    assert meta.status_code == 200 and meta.json()["state"] == "UNAVAILABLE"


def test_load_and_unload_of_an_unknown_model_is_404(make_repo, serve):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        return (await client.post("/v2/repository/models/nope/load"),
                await client.post("/v2/repository/models/nope/unload"))

    load, unload = serve(repo.root, body)
    assert load.status_code == 404 and "nope" in load.json()["error"]
    assert unload.status_code == 404 and "nope" in unload.json()["error"]


def test_load_reports_a_broken_model_and_a_repaired_one_then_serves(make_repo, serve):
    repo = make_repo(("good", 1), ("lin", 1, "corrupt"))

    async def body(client, app):
        broken = await client.post("/v2/repository/models/lin/load")
        repo.add("lin", 1)  # fix the files on disk, then load again
        fixed = await client.post("/v2/repository/models/lin/load")
        return broken, fixed, await _infer(client, "lin", images(1))

    broken, fixed, resp = serve(repo.root, body)
    assert broken.status_code == 500 and "onnxruntime cannot load" in broken.json()["error"]
    assert fixed.status_code == 200 and fixed.json()["versions"]["1"]["state"] == "READY"
    assert resp.status_code == 200


def test_a_broken_new_version_does_not_take_down_the_serving_one(make_repo, serve):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        repo.add("lin", 2, "corrupt")
        load = await client.post("/v2/repository/models/lin/load")
        return load, await _infer(client, "lin", images(1))

    load, resp = serve(repo.root, body)
    assert load.status_code == 500 and "version 2" in load.json()["error"]
    assert "serving version(s) [1] as before" in load.json()["error"]
    assert resp.status_code == 200 and resp.json()["model_version"] == "1"


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_failed_reload_of_the_serving_version_leaves_it_serving(make_repo, serve, damage):
    """The serving copy stays: its files broke on disk after it loaded, and a reload of the same version
    fails (it used to take the model down: 503 from then on)."""
    repo = make_repo(("lin", 1))

    async def body(client, app):
        onnx_file = repo.path("lin") / "model.onnx"
        if damage == "truncate":
            onnx_file.write_bytes(onnx_file.read_bytes()[:100])
        else:
            onnx_file.unlink()
        reload = await client.post("/v2/repository/models/lin/load")
        answers = [await _infer(client, "lin", images(1, seed=i)) for i in range(5)]
        return reload, answers, await client.get("/v2/models/lin/ready"), await client.get("/v2/models/lin")

    reload, answers, ready, meta = serve(repo.root, body)
    assert reload.status_code == 500 and "model.onnx" in reload.json()["error"]
    assert "serving version(s) [1] as before" in reload.json()["error"]
    assert str(repo.root) not in reload.text  # names files, never server paths
    assert [r.status_code for r in answers] == [200] * 5
    assert ready.status_code == 200
    assert meta.json()["state"] == "READY" and "the last reload failed" in meta.json()["reason"]


def test_polling_picks_up_a_new_version_and_a_new_model(make_repo, serve):
    repo = make_repo(("lin", 1))
    x = images(2)

    async def body(client, app):
        async def wait_for(path, check):
            for _ in range(400):
                r = await client.get(path)
                if r.status_code == 200 and check(r.json()):
                    return r.json()
                await asyncio.sleep(0.025)
            raise AssertionError(f"{path} never changed: {r.status_code} {r.text[:200]}")

        before = (await client.get("/v2/models/lin")).json()
        repo.add("lin", 2)
        repo.add("fresh", 1)
        meta = await wait_for("/v2/models/lin", lambda d: d["versions"] == ["2"] and d["state"] == "READY")
        fresh = await wait_for("/v2/models/fresh", lambda d: d["state"] == "READY")
        return before, meta, fresh, await _infer(client, "lin", x)

    before, meta, fresh, resp = serve(repo.root, body, poll_interval_s=0.05)
    assert before["versions"] == ["1"]
    assert meta["versions"] == ["2"] and fresh["name"] == "fresh"
    assert resp.json()["model_version"] == "2"
    np.testing.assert_allclose(_logits(resp), repo.reference("lin", 2, {"input": x})["logits"], rtol=1e-5, atol=1e-5)


# -- execution providers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("requested, available, chosen", [
    (None, [CPU], [CPU]),  # no GPU here: CPU
    (None, ["AzureExecutionProvider", CPU], [CPU]),
    (None, [CUDA, CPU], [CUDA, CPU]),  # CUDA present: first
    (None, [CPU, CUDA], [CUDA, CPU]),  # preference order, not the order onnxruntime lists them
    ([CUDA], [CPU], [CPU]),  # requested but missing: fall back to CPU
    ([TRT, CUDA], [CUDA, TRT, CPU], [TRT, CUDA, CPU]),  # requested order kept, CPU appended last
    ([CUDA, TRT], [CUDA, TRT, CPU], [CUDA, TRT, CPU]),
    ([TRT, CUDA], [CUDA, CPU], [CUDA, CPU]),
    ([CPU], [CUDA, CPU], [CPU]),  # CPU only when that is what was asked for
])
def test_select_providers(requested, available, chosen):
    assert select_providers(requested, available) == chosen


def test_select_providers_always_ends_with_cpu():
    for requested in (None, [CUDA], [TRT], [TRT, CUDA], ["MadeUpExecutionProvider"]):
        for available in ([CPU], [CUDA, CPU], [TRT, CUDA, CPU]):
            got = select_providers(requested, available)
            assert got[-1] == CPU and got.count(CPU) == 1, (requested, available, got)


@pytest.mark.parametrize("available, chosen", [([CPU], [CPU]), ([CUDA, CPU], [CUDA, CPU])])
def test_create_app_uses_the_injected_provider_list(make_repo, serve, available, chosen):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        return app.state.repository.providers, await client.get("/v2/models/lin")

    with warnings.catch_warnings():  # onnxruntime warns that this build has no CUDA, then uses the CPU
        warnings.simplefilter("ignore", UserWarning)
        providers, meta = serve(repo.root, body, available_providers=available)
    assert providers == chosen
    assert meta.json()["state"] == "READY"
    assert meta.json()["parameters"]["execution_provider"] == CPU  # the only one this onnxruntime build really has


def test_providers_setting_is_honoured(make_repo, serve):
    repo = make_repo(("lin", 1))

    async def body(client, app):
        return app.state.repository.providers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        providers = serve(repo.root, body, providers=[TRT, CUDA], available_providers=[CUDA, TRT, CPU])
    assert providers == [TRT, CUDA, CPU]


def test_serving_session_options_share_the_cores_between_workers_and_do_not_spin():
    import os

    from service.runtime.engine.session import serving_session_options
    from service.settings import Settings

    cores = len(os.sched_getaffinity(0))
    auto = serving_session_options(Settings(_env_file=None))
    assert auto.intra_op_num_threads == cores
    assert serving_session_options(Settings(_env_file=None, workers=2)).intra_op_num_threads == max(1, cores // 2)
    assert auto.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert serving_session_options(Settings(_env_file=None, intra_op_threads=3)).intra_op_num_threads == 3


def test_several_repository_folders_serve_together_and_a_name_in_two_is_served_from_the_first(make_repo, serve):
    first, second = make_repo(("lin", 1), ("both", 1)), make_repo(("other", 2), ("both", 5))
    x = images(2)

    async def body(client, app):
        return (await _infer(client, "lin", x), await _infer(client, "other", x), await client.get("/v2/models/both"))

    lin, other, both = serve([first.root, second.root], body)
    assert lin.status_code == 200 and other.status_code == 200 and other.json()["model_version"] == "2"
    np.testing.assert_allclose(_logits(other), second.reference("other", 2, {"input": x})["logits"], rtol=1e-5, atol=1e-5)
    assert both.json()["versions"] == ["1"]  # from the first folder; the second folder's version 5 is shadowed


@pytest.mark.parametrize("compute_bound", [False, True])
def test_thread_policy_leaves_a_core_to_the_event_loop_unless_the_model_is_compute_bound(make_repo, serve,
                                                                                         monkeypatch, compute_bound):
    from service.runtime.engine.session import core_share
    from service.runtime.repository import repository as repository_module
    from service.settings import Settings

    # The fake linear model costs a few microseconds per row: HTTP-bound, unless the bound is lowered to 0.
    if compute_bound:
        monkeypatch.setattr(repository_module, "COMPUTE_BOUND_ROW_US", 0.0)
    repo = make_repo(("lin", 1))

    async def body(client, app):
        entry = app.state.repository.entry("lin")
        return entry.served.session.intra_op_threads, (await client.get("/metrics")).text

    threads, text = serve(repo.root, body, intra_op_threads=0)
    share = core_share(Settings(_env_file=None))
    assert threads == (share if compute_bound or share == 1 else share - 1)
    assert f'zooserve_model_intra_op_threads{{model="lin",version="1"}} {float(threads)}' in text
