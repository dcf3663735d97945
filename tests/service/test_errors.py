"""Error bodies: zooserve's `{"error": "..."}` everywhere, OpenAI's `{"error": {message, type, param, code}}` on
the OpenAI-compatible routes, whichever layer refuses the request (route, exception handler, ASGI middleware)."""

from __future__ import annotations

import pytest

from service.http_errors import error_body


@pytest.mark.parametrize("status, message, kind, param, code", [
    (400, '"stop" must be a list of at most 4 strings', "invalid_request_error", "stop", None),
    (400, "temperature must be between 0 and 100, got -1", "invalid_request_error", "temperature", None),
    (400, 'model "lin" is an image classifier, not a language model', "invalid_request_error", None, None),
    (401, "missing or wrong API key", "authentication_error", None, "invalid_api_key"),
    (404, 'unknown model "nope"', "invalid_request_error", "model", "model_not_found"),
    (413, "request body is over the limit", "invalid_request_error", None, "request_too_large"),
    (503, "queue full; retry later", "server_error", None, "overloaded"),
    (504, "expired in the queue", "server_error", None, "timeout"),
    (500, "internal error; see the server log", "server_error", None, None),
])
def test_openai_routes_get_openai_shape(status, message, kind, param, code):
    for path in ("/v1/completions", "/v1/models"):
        assert error_body(status, message, path) == {
            "error": {"message": message, "type": kind, "param": param, "code": code}}


@pytest.mark.parametrize("path", ["/v2/models/lin/infer", "/v1/models/lin/classify", "/v1/models/x/score",
                                  "/v2/models/x/generate", ""])
def test_other_routes_keep_the_plain_shape(path):
    assert error_body(404, 'unknown model "nope"', path) == {"error": 'unknown model "nope"'}


def test_middleware_errors_follow_the_route(make_repo, serve):
    """The API-key check and the body limit answer before any route runs; they still speak each route's shape."""
    repo = make_repo(("lin", 1))

    async def body(client, app):
        return (await client.post("/v1/completions", json={"model": "lin", "prompt": "a"}),
                await client.get("/v1/models"),
                await client.post("/v2/models/lin/infer", json={}),
                await client.post("/v1/completions", content=b"x" * 4096, headers={"X-API-Key": "k"}))

    completions, models, infer, too_big = serve(repo.root, body, api_key="k", max_body_bytes=2048)
    for resp in (completions, models):
        assert resp.status_code == 401
        assert resp.json()["error"]["type"] == "authentication_error" and "API key" in resp.json()["error"]["message"]
    assert infer.status_code == 401 and "API key" in infer.json()["error"]
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "request_too_large"
