"""POST /v1/models/{model}/sample: new images from a generator (a GAN) or a VAE's decoder, seeded and batched.

Body `{"n": 25, "seed": 1, "class": "Bag", "format": "png"}`, every field optional (`class` only for a
conditional generator). Answer `{"model", "version", "seed", "images": ["<base64 PNG>", ...], "classes"?}`;
with `"format": "array"` each image is its uint8 pixels. The bodies are `service.schemas.images`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.deps import Config, ModelName, Repo
from service.responses import JSON
from service.schemas.base import parse_json
from service.schemas.images import SampleRequest, SampleResponse
from service.schemas.operations import MODEL_ERRORS, errors, json_body

router = APIRouter(prefix="/v1/models", tags=["tasks"])


@router.post("/{model}/sample", response_model=SampleResponse, responses=errors(*MODEL_ERRORS),
             openapi_extra=json_body(SampleRequest, required=False))
async def sample(model: ModelName, request: Request, repo: Repo, settings: Config):
    repo.entry(model)  # an unknown model is a 404 before the body is read
    raw = await request.body()
    req = parse_json(SampleRequest, raw if raw.strip() else b"{}")
    async with repo.acquire(model) as served:
        return JSON(await served.sample(req.n, seed=req.seed, label=req.label, fmt=req.format,
                                        timeout_s=settings.request_timeout_s))
