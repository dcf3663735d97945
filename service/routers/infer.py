"""POST .../infer: Open Inference Protocol v2 with JSON tensors or Triton's binary tensor extension."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.deps import Config, Repo
from service.protocol.encoding import decode_body
from service.protocol.v2 import HEADER_LENGTH, classify_output, encode_infer, parse_infer
from service.runtime.infer import infer

router = APIRouter(tags=["inference"])


async def _infer(request: Request, repo: Repo, settings: Config, model: str, version: int | None) -> Response:
    repo.entry(model, version)  # an unknown model or version is a 404 before its body is read
    body = decode_body(await request.body(), request.headers.get("content-encoding"), settings.max_body_bytes)
    req = parse_infer(body, request.headers.get(HEADER_LENGTH))
    # Look the model up after the last await before submitting, so a reload cannot drain it in between.
    loaded = repo.get(model, version)
    outputs = await infer(loaded, req.inputs, timeout_s=settings.request_timeout_s, requested=req.requested)
    for name, k in req.classification.items():
        outputs[name] = classify_output(outputs[name], k, loaded.card.labels)
    body, header_len = encode_infer(loaded.name, loaded.version, req, outputs)
    if header_len is None:
        return Response(body, media_type="application/json")
    return Response(body, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(header_len)})


@router.post("/v2/models/{model}/infer")
async def infer_latest(model: str, request: Request, repo: Repo, settings: Config) -> Response:
    """Run the newest ready version. Body: `{"inputs": [{"name", "shape", "datatype", "data"}]}`."""
    return await _infer(request, repo, settings, model, None)


@router.post("/v2/models/{model}/versions/{version}/infer")
async def infer_version(model: str, version: int, request: Request, repo: Repo, settings: Config) -> Response:
    return await _infer(request, repo, settings, model, version)
