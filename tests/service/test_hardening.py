"""Regressions for the defects a hostile-client review found (issue 15): values a model must not be given
are refused with a 400 that names them, and a request the model fails on fails alone."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.service.conftest import binary_body, gate_model, images, infer_json

INFER = "/v2/models/lin/infer"


def _with_data(data: list) -> dict:
    return {"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": data}]}


PIXELS = images(1).ravel().tolist()
NON_FINITE = {
    "beyond-fp32": (_with_data([1e39] + PIXELS[1:]), "beyond the FP32 range"),
    "json-infinity": (b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1e400]}]}',
                      "JSON"),
    "boolean": (_with_data([True] + PIXELS[1:]), "JSON booleans"),
    "nested-boolean": ({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                    "data": [[[PIXELS[:27] + [False]] + [PIXELS[:28]] * 27]]}]}, "JSON booleans"),
}


@pytest.mark.parametrize("case", list(NON_FINITE))
def test_non_finite_and_boolean_fp32_values_are_a_400(make_repo, serve, case):
    doc, words = NON_FINITE[case]
    kw = {"content": doc} if isinstance(doc, bytes) else {"json": doc}

    async def body(client, app):
        return await client.post(INFER, **kw), await client.post(INFER, json=infer_json(images(1)))

    bad, good = serve(make_repo(("lin", 1)).root, body)
    assert bad.status_code == 400 and words in bad.json()["error"], bad.text
    assert good.status_code == 200


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_binary_fp32_is_a_400(make_repo, serve, value):
    x = images(1)
    x[0, 0, 3, 4] = value
    content, n = binary_body([("input", "FP32", x)])

    async def body(client, app):
        return await client.post(INFER, content=content, headers={"Inference-Header-Content-Length": str(n)})

    resp = serve(make_repo(("lin", 1)).root, body)
    assert resp.status_code == 400 and "NaN, Inf" in resp.json()["error"]


def test_true_in_parameters_does_not_refuse_numbers(make_repo, serve):
    """The byte search for true/false only decides whether values are scanned, never refuses by itself."""
    async def body(client, app):
        return await client.post(INFER, json=infer_json(images(2), parameters={"binary_data_output": False},
                                                        outputs=[{"name": "logits", "parameters": {"binary_data": False}}],
                                                        id="true"))

    resp = serve(make_repo(("lin", 1)).root, body)
    assert resp.status_code == 200, resp.text


def test_a_request_the_model_fails_on_gets_a_500_alone_and_its_batch_mates_200(make_repo, serve):
    """The run fails for any batch holding the marked request (as onnxruntime does on an input it cannot
    take): that request gets a 500 naming the model, the others of its batch their answers."""
    marker = 123.0

    async def body(client, app):
        model = app.state.repository.get("lin")
        gate, _ = gate_model(model)
        real = model.batcher.run_fn

        def run(feeds):
            if (feeds["input"] == marker).any():
                raise RuntimeError("Non-zero status code returned while running Gather node\n(more lines)")
            return real(feeds)

        model.batcher.run_fn = run
        xs = [images(1, seed=i) for i in range(6)]
        xs[2][0, 0, 0, 0] = marker
        blocker = asyncio.create_task(client.post(INFER, json=infer_json(images(1))))
        await asyncio.sleep(0.05)  # in the model, behind the gate: the six below form one batch
        tasks = [asyncio.create_task(client.post(INFER, json=infer_json(x))) for x in xs]
        await asyncio.sleep(0.05)
        gate.set()
        return await blocker, await asyncio.gather(*tasks)

    blocker, answers = serve(make_repo(("lin", 1)).root, body, max_batch_size=8, max_delay_ms=50)
    assert blocker.status_code == 200
    assert [r.status_code for r in answers] == [200, 200, 500, 200, 200, 200]
    assert answers[2].json()["error"] == ('model "lin" failed on this request: RuntimeError: Non-zero status code '
                                          'returned while running Gather node')


# -- repository control is the admin's ----------------------------------------------------------------------

def test_a_default_server_refuses_unload_and_keeps_serving(make_repo, serve):
    async def body(client, app):
        no_key = await client.post("/v2/repository/models/lin/unload", headers={"X-Admin-Key": ""})
        index = await client.post("/v2/repository/index")
        return no_key, index, await client.get("/v2/models/lin/ready"), await client.post(INFER, json=infer_json(images(1)))

    unload, index, ready, infer = serve(make_repo(("lin", 1)).root, body, repository_control=False, admin_key=None)
    assert unload.status_code == 403 and "ZOOSERVE_REPOSITORY_CONTROL" in unload.json()["error"]
    assert index.status_code == 200  # the index stays readable
    assert ready.status_code == 200 and infer.status_code == 200


def test_with_control_on_only_the_admin_key_loads_and_unloads(make_repo, serve):
    async def body(client, app):
        inference_key = {"Authorization": "Bearer inference-key", "X-Admin-Key": ""}
        return {
            "no-key": await client.post("/v2/repository/models/lin/unload", headers={"X-Admin-Key": ""}),
            "inference-key": await client.post("/v2/repository/models/lin/unload", headers=inference_key),
            "admin-key-as-inference-key": await client.post(
                INFER, json=infer_json(images(1)), headers={"Authorization": "Bearer admin-key"}),
            "index-with-inference-key": await client.post("/v2/repository/index", headers=inference_key),
            "ready-after": await client.get("/v2/models/lin/ready", headers=inference_key),
            "admin": await client.post("/v2/repository/models/lin/load", headers={"Authorization": "Bearer admin-key"}),
        }

    got = serve(make_repo(("lin", 1)).root, body, api_key="inference-key", admin_key="admin-key")
    assert got["no-key"].status_code == 401 and "admin key" in got["no-key"].json()["error"]
    assert got["inference-key"].status_code == 401
    assert got["admin-key-as-inference-key"].status_code == 401
    assert got["index-with-inference-key"].status_code == 200
    assert got["ready-after"].status_code == 200
    assert got["admin"].status_code == 200


@pytest.mark.parametrize("values, words", [({"repository_control": True}, "needs an admin_key"),
                                           ({"admin_key": "same", "api_key": "same"}, "must differ")])
def test_control_settings_that_would_leave_the_repository_open_are_refused(values, words):
    from pydantic import ValidationError

    from service.settings import Settings

    with pytest.raises(ValidationError, match=words):
        Settings(_env_file=None, **values)


@pytest.mark.parametrize("datatype, data, words", [
    ("FP32", ["1"] * 784, "are not FP32"),
    ("FP32", [[1, 2], [3]], "equal-length lists"),
    ("INT64", [1.5], "with a fraction"),
    ("INT32", [2 ** 31], "beyond the INT32 range"),
    ("UINT8", [-1], "beyond the UINT8 range"),
    ("INT64", [2 ** 63], "beyond the INT64 range"),
    ("BOOL", [1], "are not BOOL"),
])
def test_v2_data_of_the_wrong_kind_is_a_400_not_converted(datatype, data, words):
    """numpy would read "1" as 1.0, cut 1.5 to 1 and wrap 2**31 around: each is refused instead."""
    import orjson

    from service.protocol.v2 import parse_infer
    from service.runtime.errors import BadInput

    body = orjson.dumps({"inputs": [{"name": "x", "shape": [len(data)], "datatype": datatype, "data": data}]})
    with pytest.raises(BadInput, match=words):
        parse_infer(body, None)


def test_integral_floats_and_the_full_uint64_range_are_read_exactly():
    import orjson

    from service.protocol.v2 import parse_infer

    body = orjson.dumps({"inputs": [{"name": "a", "shape": [2], "datatype": "INT64", "data": [3.0, -2]},
                                    {"name": "b", "shape": [2], "datatype": "UINT64", "data": [2 ** 64 - 1, 0]}]})
    got = parse_infer(body, None).inputs
    assert got["a"].tolist() == [3, -2] and got["b"].tolist() == [2 ** 64 - 1, 0]


@pytest.mark.parametrize("array, words", [([[True] * 28] * 28, "nested list of numbers"),
                                          ([["1"] * 28] * 28, "nested list of numbers")])
def test_classify_pixel_arrays_of_booleans_or_strings_are_a_400(make_repo, serve, array, words):
    async def body(client, app):
        return await client.post("/v1/models/lin/classify", json={"arrays": [array]})

    resp = serve(make_repo(("lin", 1)).root, body)
    assert resp.status_code == 400 and words in resp.json()["error"], resp.text
