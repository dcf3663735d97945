"""POST .../infer: Open Inference Protocol v2 with JSON tensors or Triton's binary tensor extension.

This is the hot path, so it is served twice over one implementation (`handle`):

- `InferFastPath`, a pure-ASGI layer just inside the service's middleware (metrics, body limit, API key,
  CORS), answers `POST /v2/models/{model}[/versions/{n}]/infer` itself. Under load on 2 cores, FastAPI's
  per-request machinery (exception and exit-stack layers, route matching over every router, the
  dependency solver, Request and Response wrappers) cost more CPU than parsing the body, validating it,
  batching, running LeNet and encoding the answer together (py-spy, benchmarks/serve_bench.py).
- The FastAPI routes below document the endpoint in OpenAPI (the body as `service.schemas.v2.InferRequest`,
  which is never used to parse it), and serve what the fast path leaves to them (a version that is not a
  positive integer gets a 400).
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.deps import ModelName, Version
from service.errors import error
from service.protocol.encoding import WBITS, decode_body
from service.protocol.v2 import HEADER_LENGTH, classify_output, encode_infer, parse_infer
from service.runtime.errors import Overloaded, ServiceError
from service.runtime.infer import infer
from service.schemas.operations import MODEL_ERRORS, body, errors, ref
from service.schemas.v2 import InferRequest, InferResponse

router = APIRouter(tags=["inference"])
LATEST, VERSIONED = "/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer"
JSON_TYPE, BINARY_TYPE = "application/json", "application/octet-stream"


async def handle(state, model: str, version: int | None, body: bytes, content_encoding: str | None,
                 header_length: str | None, parsed=None) -> tuple[bytes, str, dict[str, str]]:
    """One V2 request -> (response body, media type, extra headers). Raises ServiceError for the client.
    `parsed()` is called once the request is ready to queue (it leaves the batcher's `Arrivals`)."""
    settings = state.settings
    # 404/503 before the body is parsed. No await from here to the submit in infer(), so a reload cannot
    # drain this version in between.
    loaded = state.repository.get(model, version)
    req = parse_infer(decode_body(body, content_encoding, settings.max_body_bytes), header_length)
    if parsed:
        parsed()
    outputs = await infer(loaded, req.inputs, timeout_s=settings.request_timeout_s, requested=req.requested)
    for name, k in req.classification.items():
        outputs[name] = classify_output(outputs[name], k, loaded.card.labels)
    out, header_len = encode_infer(loaded.name, loaded.version, req, outputs)
    if header_len is None:
        return out, JSON_TYPE, {}
    return out, BINARY_TYPE, {"Inference-Header-Content-Length": str(header_len)}


async def _route(request: Request, model: str, version: int | None) -> Response:
    h = request.headers
    out, media, headers = await handle(request.app.state, model, version, await request.body(),
                                       h.get("content-encoding"), h.get(HEADER_LENGTH))
    return Response(out, media_type=media, headers=headers)


BINARY = {"type": "string", "format": "binary",
          "description": "the JSON header (InferRequest), then the raw little-endian tensors"}
HEADERS = [
    {"name": "Inference-Header-Content-Length", "in": "header", "required": False,
     "schema": {"type": "integer", "minimum": 1},
     "description": "binary extension: the length of the JSON header at the start of the body"},
    {"name": "Content-Encoding", "in": "header", "required": False,
     "schema": {"enum": ["identity", *WBITS]}, "description": "a compressed body, inflated under the size limit"},
]
DOC = {
    "openapi_extra": {"parameters": HEADERS, **body({JSON_TYPE: ref(InferRequest), BINARY_TYPE: BINARY})},
    "response_class": Response,
    "responses": {200: {"description": "the outputs, as JSON or (when any output is binary) binary extension",
                        "content": {JSON_TYPE: {"schema": ref(InferResponse)}, BINARY_TYPE: {"schema": BINARY}},
                        "headers": {"Inference-Header-Content-Length": {
                            "description": "with binary outputs: the length of the JSON header",
                            "schema": {"type": "integer"}}}},
                  **errors(*MODEL_ERRORS)},
}


@router.post(LATEST, **DOC)
async def infer_latest(model: ModelName, request: Request) -> Response:
    """Run the newest ready version."""
    return await _route(request, model, None)


@router.post(VERSIONED, **DOC)
async def infer_version(model: ModelName, version: Version, request: Request) -> Response:
    """Run one version."""
    return await _route(request, model, version)


# -- the same endpoint in pure ASGI ------------------------------------------------------------------------

_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([0-9]+))?/infer")


class _Template:
    """Stands in for the matched route in the scope: RequestMetrics labels requests by `route.path`."""

    def __init__(self, path: str):
        self.path = path


_TEMPLATES = {False: _Template(LATEST), True: _Template(VERSIONED)}


class InferFastPath:
    """`POST /v2/models/{model}[/versions/{n}]/infer` straight to `handle`; everything else to `app`."""

    def __init__(self, app, state):
        self.app, self.state = app, state  # state: the FastAPI app's state (repository, settings)

    async def __call__(self, scope, receive, send):
        match = _PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if match is None:
            return await self.app(scope, receive, send)
        model, version = match.group(1), match.group(2)
        scope["path_params"] = {"model": model} if version is None else {"model": model, "version": version}
        scope["route"] = _TEMPLATES[version is not None]
        # From now until it is queued (or fails), a batch of this model being formed may wait for it.
        arrivals, on_the_way = self.state.repository.arrivals, True
        arrivals.enter(model)

        def parsed():
            nonlocal on_the_way
            if on_the_way:
                on_the_way = False
                arrivals.leave(model)

        try:
            body = await _read_body(receive)
            if body is None:
                return  # the client went away
            encoding = length = None
            for k, v in scope["headers"]:
                if k == b"content-encoding":
                    encoding = v.decode("latin-1")
                elif k == b"inference-header-content-length":
                    length = v.decode("latin-1")
            out, media, headers = await handle(self.state, model, None if version is None else int(version), body,
                                               encoding, length, parsed)
        except ServiceError as exc:
            retry = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else None
            return await error(exc.status, str(exc), retry)(scope, receive, send)
        finally:
            parsed()
        raw = [(b"content-type", media.encode()), (b"content-length", str(len(out)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": out})


async def _read_body(receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
