"""POST /v1/models/{model}/classify: images or texts in, top-k labels with probabilities out.

Image classifiers: JSON `{"images": ["<base64 PNG/JPEG>", ...]}` or `{"arrays": [[[0-255 pixels]], ...]}`,
or a multipart form with one or more `files`. Text classifiers: JSON `{"texts": ["...", ...]}` or
`{"text": "..."}`. `top_k` (default 3) is a query or JSON field. The bodies are `service.schemas.tasks`; the
handler reads them itself, since one route takes both JSON and multipart.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from service.deps import Config, ModelName, Repo
from service.protocol.v2 import load_json
from service.responses import JSON
from service.runtime.errors import BadInput
from service.runtime.tasks.base import ClassifyRequest
from service.schemas.base import parse
from service.schemas.operations import MODEL_ERRORS, body, errors, ref
from service.schemas.tasks import (IMAGE_BODIES, MAX_IMAGES, TEXT_BODIES, ClassifyArrays, ClassifyImages,
                                   ClassifyResponse, ClassifyTexts)

router = APIRouter(prefix="/v1/models", tags=["tasks"])
FILES = {"type": "object", "required": ["files"], "properties": {"files": {
    "type": "array", "items": {"type": "string", "format": "binary"}, "maxItems": MAX_IMAGES,
    "description": "PNG or JPEG files, for image classifiers"}}}
REQUEST = body({"application/json": {"oneOf": [ref(m) for m in (*IMAGE_BODIES.values(), *TEXT_BODIES.values())]},
                "multipart/form-data": FILES},
               description="images (base64, pixel arrays or files) for an image classifier, texts for a text "
                           "classifier: exactly one of the fields")


async def _classify_request(request: Request) -> ClassifyRequest:
    """The body as it came: multipart files, or one of the JSON bodies. Decoding and checking it against the
    card (which kind of input, how many texts, the image size) is the model's (tasks.classifiers)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        files = form.getlist("files") or form.getlist("file")
        if not files:
            raise BadInput("multipart upload needs one or more \"files\" parts")
        if len(files) > MAX_IMAGES:
            raise BadInput(f"at most {MAX_IMAGES} images per request, got {len(files)}")
        images = []
        for i, f in enumerate(files):
            if isinstance(f, str):
                raise BadInput(f"files[{i}] must be a file upload, not a text field")
            images.append((f"files[{i}] ({f.filename})", await f.read()))
        return ClassifyRequest(images=images)
    doc = load_json(await request.body(), "the request body")
    bodies = {**IMAGE_BODIES, **TEXT_BODIES}
    choices = '"images" (base64 PNG/JPEG), "arrays" (pixel lists), "texts" (a list of strings) or "text" (a string)'
    if not isinstance(doc, dict):
        raise BadInput(f"the body must be a JSON object with {choices}")
    given = [key for key in bodies if key in doc]
    if len(given) != 1:
        raise BadInput(f"give exactly one of {choices}")
    parsed = parse(bodies[given[0]], doc)
    if isinstance(parsed, ClassifyImages):
        return ClassifyRequest(images=[(f"images[{i}]", t) for i, t in enumerate(parsed.images)], top_k=parsed.top_k)
    if isinstance(parsed, ClassifyArrays):
        return ClassifyRequest(arrays=[(f"arrays[{i}]", a) for i, a in enumerate(parsed.arrays)], top_k=parsed.top_k)
    texts = parsed.texts if isinstance(parsed, ClassifyTexts) else [parsed.text]
    return ClassifyRequest(texts=texts, field=given[0], top_k=parsed.top_k)


@router.post("/{model}/classify", response_model=ClassifyResponse, responses=errors(*MODEL_ERRORS),
             openapi_extra=REQUEST)
async def classify(model: ModelName, request: Request, repo: Repo, settings: Config,
                   top_k: Annotated[int | None, Query(ge=1, description="labels per item; wins over the body's "
                                                                         "top_k")] = None):
    repo.entry(model)  # an unknown model is a 404 before the body is read
    body = await _classify_request(request)
    if top_k is not None:
        body.top_k = top_k
    async with repo.acquire(model) as served:
        results = await served.classify(body, timeout_s=settings.request_timeout_s)
    return JSON({"model": served.name, "version": str(served.version), "predictions": results})
