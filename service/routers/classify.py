"""POST /v1/models/{model}/classify: images or texts in, top-k labels with probabilities out.

Image classifiers: JSON `{"images": ["<base64 PNG/JPEG>", ...]}` or `{"arrays": [[[0-255 pixels]], ...]}`,
or a multipart form with one or more `files`. Text classifiers: JSON `{"texts": ["...", ...]}` or
`{"text": "..."}`. `top_k` (default 3) is a query or JSON field. The bodies are `service.schemas.tasks`; the
handler reads them itself (`service.inputs`, shared with /reconstruct and /embed), since one route takes both
JSON and multipart.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.deps import Config, ModelName, Repo
from service.inputs import FILES, read_inputs
from service.responses import JSON
from service.schemas.operations import MODEL_ERRORS, body, errors, ref
from service.schemas.tasks import IMAGE_BODIES, TEXT_BODIES, ClassifyResponse

router = APIRouter(prefix="/v1/models", tags=["tasks"])
REQUEST = body({"application/json": {"oneOf": [ref(m) for m in (*IMAGE_BODIES.values(), *TEXT_BODIES.values())]},
                "multipart/form-data": FILES},
               description="images (base64, pixel arrays or files) for an image classifier, texts for a text "
                           "classifier: exactly one of the fields")


@router.post("/{model}/classify", response_model=ClassifyResponse, responses=errors(*MODEL_ERRORS),
             openapi_extra=REQUEST)
async def classify(model: ModelName, request: Request, repo: Repo, settings: Config,
                   top_k: Annotated[int | None, Query(ge=1, description="labels per item; wins over the body's "
                                                                         "top_k")] = None):
    repo.entry(model)  # an unknown model is a 404 before the body is read
    body, _ = await read_inputs(request, {**IMAGE_BODIES, **TEXT_BODIES})
    if top_k is not None:
        body.top_k = top_k
    async with repo.acquire(model) as served:
        results = await served.classify(body, timeout_s=settings.request_timeout_s)
    return JSON({"model": served.name, "version": str(served.version), "predictions": results})
