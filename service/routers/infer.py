"""POST .../infer: Open Inference Protocol v2 with JSON tensors or Triton's binary tensor extension.

One implementation (`handle`) with two entrances: the FastAPI routes below, which document the endpoint in
OpenAPI (the body as `service.schemas.v2.InferRequest`, which is never used to parse it) and serve what the
fast path leaves to them (a version that is not a positive integer gets a 400), and the pure-ASGI fast path
in service/fastpath.py, which answers the hot path without FastAPI's per-request machinery.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.deps import ModelName, Version
from service.protocol.encoding import WBITS, decode_body
from service.protocol.v2 import HEADER_LENGTH, classify_output, encode_infer, parse_infer
from service.schemas.operations import MODEL_ERRORS, body, errors, ref
from service.schemas.v2 import InferRequest, InferResponse

router = APIRouter(tags=["inference"])
LATEST, VERSIONED = "/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer"
JSON_TYPE, BINARY_TYPE = "application/json", "application/octet-stream"


async def handle(state, model: str, version: int | None, body: bytes, content_encoding: str | None,
                 header_length: str | None) -> tuple[bytes, str, dict[str, str]]:
    """One V2 request -> (response body, media type, extra headers). Raises ServiceError for the client."""
    settings = state.settings
    # The lookup first: 404/503 before the body is parsed.
    async with state.repository.acquire(model, version) as served:
        req = parse_infer(decode_body(body, content_encoding, settings.max_body_bytes), header_length)
        outputs = await served.infer(req.inputs, timeout_s=settings.request_timeout_s, requested=req.requested)
    for name, k in req.classification.items():
        outputs[name] = classify_output(outputs[name], k, served.card.labels)
    out, header_len = encode_infer(served.name, served.version, req, outputs)
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
