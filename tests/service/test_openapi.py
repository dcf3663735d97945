"""The OpenAPI document and the docs pages: every POST declares its body, every operation its errors with
the route's error body, no dangling `$ref`, media types as served (Prometheus text, server-sent events,
binary tensors), the API key when one is set; and /docs and /redoc load nothing from another origin."""

from __future__ import annotations

import re

import orjson
import pytest

from service.schemas.v2 import InferRequest
from tests.service.conftest import binary_body, images, infer_json

SCHEMAS = "#/components/schemas/"


def get_all(serve, root, *paths, headers=None, **settings):
    async def body(client, app):
        return [await client.get(p, headers=headers) for p in paths]
    return serve(root, body, **settings)


@pytest.fixture
def doc(make_repo, serve) -> dict:
    (resp,) = get_all(serve, make_repo(("lin", 1)).root, "/openapi.json")
    assert resp.status_code == 200
    return resp.json()


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method, op


def refs(node) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return own.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def test_every_post_declares_its_request_body(doc):
    posts = [(path, op) for path, method, op in operations(doc) if method == "post"]
    assert len(posts) == 13
    for path, op in posts:
        content = op.get("requestBody", {}).get("content")
        assert content, f"POST {path} declares no request body"
        assert all(media.get("schema") for media in content.values()), path


def test_every_operation_declares_its_errors_with_the_error_body_and_no_422(doc):
    for path, method, op in operations(doc):
        responses = op["responses"]
        assert "422" not in responses, path
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                want = SCHEMAS + ("OpenAIError" if path == "/v1/completions" else "Error")
                assert response["content"]["application/json"]["schema"] == {"$ref": want}, (path, status)
        if method == "post":
            assert {"400", "413"} <= set(responses), path
        if "{model}" in path:
            assert "404" in responses, path
        if "{version}" in path or "top_k" in str(op.get("parameters")):
            assert "400" in responses, path
    assert doc["paths"]["/v2/models/{model}/infer"]["post"]["responses"]["503"]["headers"]["Retry-After"]
    assert "499" in doc["paths"]["/v2/models/{model}/generate"]["post"]["responses"]


def test_every_reference_resolves(doc):
    schemas = doc["components"]["schemas"]
    names = {r.removeprefix(SCHEMAS) for r in refs(doc)}
    assert names and names <= set(schemas), names - set(schemas)
    assert {"InferRequest", "InferResponse", "ClassifyImages", "ClassifyTexts", "GenerateStreamEvent",
            "CompletionChunk", "SampleRequest", "SampleResponse", "ReconstructArrays", "EmbedImages",
            "EmbedResponse"} <= names


def test_media_types_as_served(doc):
    def content(path, method="post", status="200"):
        return doc["paths"][path][method]["responses"][status]["content"]

    assert list(content("/metrics", "get")) == ["text/plain"]
    assert list(content("/v2/models/{model}/generate_stream")) == ["text/event-stream"]
    assert set(content("/v1/completions")) == {"application/json", "text/event-stream"}
    assert set(content("/v2/models/{model}/infer")) == {"application/json", "application/octet-stream"}
    infer_body = doc["paths"]["/v2/models/{model}/infer"]["post"]["requestBody"]["content"]
    assert set(infer_body) == {"application/json", "application/octet-stream"}
    for task in ("classify", "reconstruct", "embed"):
        task_body = doc["paths"][f"/v1/models/{{model}}/{task}"]["post"]["requestBody"]["content"]
        assert set(task_body) == {"application/json", "multipart/form-data"}, task
    sample = doc["components"]["schemas"]["SampleRequest"]["properties"]
    assert set(sample) == {"n", "seed", "class", "format"} and sample["format"]["enum"] == ["png", "array"]
    sampling = doc["components"]["schemas"]["Sampling"]["properties"]
    assert sampling["top_p"]["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0, "maximum": 1}


def test_with_an_api_key_every_guarded_operation_declares_the_key_and_its_401(make_repo, serve):
    (resp,) = get_all(serve, make_repo(("lin", 1)).root, "/openapi.json", headers={"X-API-Key": "k"}, api_key="k")
    doc = resp.json()
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    for path, _, op in operations(doc):
        guarded = not path.startswith(("/v2/health/", "/metrics"))
        assert ("401" in op["responses"]) == guarded and ("security" in op) == guarded, path


def test_the_infer_schema_accepts_what_the_parser_takes():
    """InferRequest is only documentation (the fast path parses with orjson): it must not refuse real requests."""
    x = images(2)
    head, n = binary_body([("input", "FP32", x)], id="b", parameters={"binary_data_output": True},
                          outputs=[{"name": "logits", "parameters": {"binary_data": True, "classification": 3}}])
    for body in (orjson.dumps(infer_json(x)), orjson.dumps(infer_json(x, id="r", outputs=[{"name": "logits"}])),
                 head[:n]):
        InferRequest.model_validate_json(body)


def test_docs_pages_load_only_same_origin_assets_and_those_answer(make_repo, serve):
    root = make_repo(("lin", 1)).root
    docs, redoc = get_all(serve, root, "/docs", "/redoc")
    urls = set()
    for page in (docs, redoc):
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        found = re.findall(r'(?:src|href)="([^"]+)"|url: \'([^\']+)\'|spec-url="([^"]+)"', page.text)
        urls |= {u for group in found for u in group if u}
    assert len(urls) >= 5, urls  # the JS and CSS, the favicon, ReDoc's script, the document
    assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert not re.search(r"https?://", docs.text + redoc.text)
    answers = get_all(serve, root, *sorted(urls))
    assert [r.status_code for r in answers] == [200] * len(urls), dict(zip(sorted(urls), answers))
    by_url = dict(zip(sorted(urls), answers))
    assert "SwaggerUIBundle" in by_url["/docs/static/swagger-ui-bundle.js"].text
