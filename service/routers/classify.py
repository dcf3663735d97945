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
from service.runtime.classify import (array_to_input, check_texts, classify_images, classify_texts, decode_base64,
                                      decode_image, image_to_array)
from service.runtime.errors import BadInput, shown, task_noun
from service.schemas.base import parse
from service.schemas.operations import MODEL_ERRORS, body, errors, ref
from service.schemas.tasks import IMAGE_BODIES, MAX_IMAGES, TEXT_BODIES, ClassifyImages, ClassifyResponse, ClassifyTexts

router = APIRouter(prefix="/v1/models", tags=["tasks"])
FILES = {"type": "object", "required": ["files"], "properties": {"files": {
    "type": "array", "items": {"type": "string", "format": "binary"}, "maxItems": MAX_IMAGES,
    "description": "PNG or JPEG files, for image classifiers"}}}
REQUEST = body({"application/json": {"oneOf": [ref(m) for m in (*IMAGE_BODIES.values(), *TEXT_BODIES.values())]},
                "multipart/form-data": FILES},
               description="images (base64, pixel arrays or files) for an image classifier, texts for a text "
                           "classifier: exactly one of the fields")


async def _images_from_request(request: Request, pre) -> tuple[list, int | None]:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        files = form.getlist("files") or form.getlist("file")
        if not files:
            raise BadInput("multipart upload needs one or more \"files\" parts")
        if len(files) > MAX_IMAGES:
            raise BadInput(f"at most {MAX_IMAGES} images per request, got {len(files)}")
        out = []
        for i, f in enumerate(files):
            if isinstance(f, str):
                raise BadInput(f"files[{i}] must be a file upload, not a text field")
            out.append(image_to_array(decode_image(await f.read(), f"files[{i}] ({f.filename})"), pre))
        return out, None
    doc = _one_of(load_json(await request.body(), "the request body"), IMAGE_BODIES,
                  '"images" (base64 PNG/JPEG) or "arrays" (pixel lists)')
    if isinstance(doc, ClassifyImages):
        out = [image_to_array(decode_image(decode_base64(t, f"images[{i}]"), f"images[{i}]"), pre)
               for i, t in enumerate(doc.images)]
    else:
        out = [array_to_input(a, pre, f"arrays[{i}]") for i, a in enumerate(doc.arrays)]
    return out, doc.top_k


def _one_of(doc, bodies: dict, choices: str):
    """The body model of the one field `doc` has among `bodies`' keys."""
    if not isinstance(doc, dict):
        raise BadInput(f"the body must be a JSON object with {choices}")
    given = [key for key in bodies if key in doc]
    if len(given) != 1:
        raise BadInput(f"give exactly one of {choices}")
    return parse(bodies[given[0]], doc)


async def _texts_from_request(request: Request, limit: int) -> tuple[list[str], str, int | None]:
    doc = _one_of(load_json(await request.body(), "the request body"), TEXT_BODIES,
                  '"texts" (a list of strings) or "text" (a string)')
    field, raw = ("texts", doc.texts) if isinstance(doc, ClassifyTexts) else ("text", [doc.text])
    return check_texts(raw, field, limit), field, doc.top_k


@router.post("/{model}/classify", response_model=ClassifyResponse, responses=errors(*MODEL_ERRORS),
             openapi_extra=REQUEST)
async def classify(model: ModelName, request: Request, repo: Repo, settings: Config,
                   top_k: Annotated[int | None, Query(ge=1, description="labels per item; wins over the body's "
                                                                         "top_k")] = None):
    loaded = repo.get(model)
    task = loaded.card.task
    if task == "text-classification" and loaded.tokenizer is not None:
        texts, field, body_k = await _texts_from_request(request, loaded.batcher.max_batch_size)
    elif task == "image-classification":
        images, body_k = await _images_from_request(request, loaded.card.preprocess)
    else:
        raise BadInput(f"model {shown(model)} is {task_noun(task)}; /classify serves image and subword text classifiers")
    k = next((v for v in (top_k, body_k) if v is not None), 3)
    loaded = repo.get(model)  # again after the last await: a reload may have swapped the version meanwhile
    k = min(k, len(loaded.card.labels))
    if task == "text-classification":
        results = await classify_texts(loaded, texts, k=k, timeout_s=settings.request_timeout_s, field=field)
    else:
        results = await classify_images(loaded, images, k=k, timeout_s=settings.request_timeout_s)
    return JSON({"model": loaded.name, "version": str(loaded.version), "predictions": results})
