"""POST /v1/models/{model}/reconstruct: images through an autoencoder's code and back.

Images as /classify takes them: JSON `{"images": [...]}` or `{"arrays": [...]}`, or multipart `files`.
`format` ("png", the default, or "array") is a query or JSON field. Answer `{"model", "version", "images"}`,
one reconstruction per image in the order sent.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.deps import Config, ModelName, Repo
from service.inputs import FILES, read_inputs
from service.responses import JSON
from service.schemas.images import FORMAT_DOC, RECONSTRUCT_BODIES, Format, ReconstructResponse
from service.schemas.operations import MODEL_ERRORS, body, errors, ref

router = APIRouter(prefix="/v1/models", tags=["tasks"])
REQUEST = body({"application/json": {"oneOf": [ref(m) for m in RECONSTRUCT_BODIES.values()]},
                "multipart/form-data": FILES}, description="images as base64, pixel arrays or files: one of the fields")


@router.post("/{model}/reconstruct", response_model=ReconstructResponse, responses=errors(*MODEL_ERRORS),
             openapi_extra=REQUEST)
async def reconstruct(model: ModelName, request: Request, repo: Repo, settings: Config,
                      format: Annotated[Format | None, Query(description=f"{FORMAT_DOC}; wins over the body's "
                                                                         "format")] = None):
    repo.entry(model)  # an unknown model is a 404 before the body is read
    items, parsed = await read_inputs(request, RECONSTRUCT_BODIES)
    fmt = format or (parsed.format if parsed is not None else "png")
    async with repo.acquire(model) as served:
        return JSON(await served.reconstruct(items, fmt=fmt, timeout_s=settings.request_timeout_s))
