"""POST /v1/models/{model}/embed: images to an autoencoder's codes (a VAE's posterior mean).

Images as /classify takes them: JSON `{"images": [...]}` or `{"arrays": [...]}`, or multipart `files`.
Answer `{"model", "version", "codes": [[...], ...]}`, one code per image in the order sent.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.deps import Config, ModelName, Repo
from service.inputs import FILES, read_inputs
from service.responses import JSON
from service.schemas.images import EMBED_BODIES, EmbedResponse
from service.schemas.operations import MODEL_ERRORS, body, errors, ref

router = APIRouter(prefix="/v1/models", tags=["tasks"])
REQUEST = body({"application/json": {"oneOf": [ref(m) for m in EMBED_BODIES.values()]},
                "multipart/form-data": FILES}, description="images as base64, pixel arrays or files: one of the fields")


@router.post("/{model}/embed", response_model=EmbedResponse, responses=errors(*MODEL_ERRORS), openapi_extra=REQUEST)
async def embed(model: ModelName, request: Request, repo: Repo, settings: Config):
    repo.entry(model)  # an unknown model is a 404 before the body is read
    items, _ = await read_inputs(request, EMBED_BODIES)
    async with repo.acquire(model) as served:
        return JSON(await served.embed(items, timeout_s=settings.request_timeout_s))
