"""POST /v1/models/{model}/classify: images or texts in, top-k labels with probabilities out.

Image classifiers: JSON `{"images": ["<base64 PNG/JPEG>", ...]}` or `{"arrays": [[[0-255 pixels]], ...]}`,
or a multipart form with one or more `files`. Text classifiers: JSON `{"texts": ["...", ...]}` or
`{"text": "..."}`. `top_k` (default 3) is a query or JSON field.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from service.deps import Config, Repo
from service.protocol.v2 import load_json
from service.runtime.errors import BadInput, shown
from service.runtime.tasks.base import ClassifyRequest

router = APIRouter(prefix="/v1/models", tags=["tasks"])
MAX_IMAGES = 1024


async def _classify_request(request: Request, limit: int = MAX_IMAGES) -> ClassifyRequest:
    """The body as it came: multipart files, or JSON images (base64), arrays (pixel lists) or texts. Decoding
    and checking against the card is the model's (tasks.classifiers)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        files = form.getlist("files") or form.getlist("file")
        if not files:
            raise BadInput("multipart upload needs one or more \"files\" parts")
        if len(files) > limit:
            raise BadInput(f"at most {limit} images per request, got {len(files)}")
        images = []
        for i, f in enumerate(files):
            if isinstance(f, str):
                raise BadInput(f"files[{i}] must be a file upload, not a text field")
            images.append((f"files[{i}] ({f.filename})", await f.read()))
        return ClassifyRequest(images=images)
    doc = load_json(await request.body(), "the request body")
    if not isinstance(doc, dict):
        raise BadInput('the body must be a JSON object with "images" (base64), "arrays" (pixel lists), '
                       '"texts" (a list of strings) or "text" (a string)')
    given = [f for f in ("images", "arrays", "texts", "text") if f in doc]
    if len(given) != 1:
        raise BadInput('give exactly one of "images" (base64 PNG/JPEG), "arrays" (pixel lists), "texts" (a list of '
                       f'strings) or "text" (a string); got {given or "none"}')
    field, k = given[0], _body_k(doc)
    if field in ("texts", "text"):
        return ClassifyRequest(texts=doc["texts"] if field == "texts" else [doc["text"]], field=field, top_k=k)
    items = doc[field]
    if not isinstance(items, list):
        raise BadInput(f'"{field}" must be a list')
    if len(items) > limit:
        raise BadInput(f"at most {limit} images per request, got {len(items)}")
    if field == "images":
        return ClassifyRequest(images=[(f"images[{i}]", t) for i, t in enumerate(items)], top_k=k)  # base64
    return ClassifyRequest(arrays=[(f"arrays[{i}]", a) for i, a in enumerate(items)], top_k=k)


def _body_k(doc: dict) -> int | None:
    k = doc.get("top_k")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool)):
        raise BadInput(f"top_k must be an integer, got {shown(k)}")
    return k


@router.post("/{model}/classify")
async def classify(model: str, request: Request, repo: Repo, settings: Config,
                   top_k: int | None = Query(None, description="labels to return per image")) -> dict:
    repo.entry(model)  # an unknown model is a 404 before the body is read
    body = await _classify_request(request)
    if top_k is not None:  # the query wins over the body
        body.top_k = top_k
    async with repo.acquire(model) as served:
        results = await served.classify(body, timeout_s=settings.request_timeout_s)
    return {"model": served.name, "version": str(served.version), "predictions": results}
