"""POST /v1/models/{model}/classify: images or texts in, top-k labels with probabilities out.

Image classifiers: JSON `{"images": ["<base64 PNG/JPEG>", ...]}` or `{"arrays": [[[0-255 pixels]], ...]}`,
or a multipart form with one or more `files`. Text classifiers: JSON `{"texts": ["...", ...]}` or
`{"text": "..."}`. `top_k` (default 3) is a query or JSON field.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from service.deps import Config, Repo
from service.protocol.v2 import load_json
from service.runtime.classify import (array_to_input, check_texts, classify_images, classify_texts, decode_base64,
                                      decode_image, image_to_array)
from service.runtime.errors import BadInput, shown, task_noun

router = APIRouter(prefix="/v1/models", tags=["tasks"])
MAX_IMAGES = 1024


async def _images_from_request(request: Request, pre) -> tuple[list, int | None]:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
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
    doc = load_json(await request.body(), "the request body")
    if not isinstance(doc, dict):
        raise BadInput('the body must be a JSON object with "images" (base64) or "arrays" (pixel lists)')
    images, arrays = doc.get("images"), doc.get("arrays")
    if (images is None) == (arrays is None):
        raise BadInput('give exactly one of "images" (base64 PNG/JPEG) or "arrays" (pixel lists)')
    items = images if images is not None else arrays
    if not isinstance(items, list):
        raise BadInput(f'"{"images" if images is not None else "arrays"}" must be a list')
    if len(items) > MAX_IMAGES:
        raise BadInput(f"at most {MAX_IMAGES} images per request, got {len(items)}")
    if images is not None:
        out = [image_to_array(decode_image(decode_base64(t, f"images[{i}]"), f"images[{i}]"), pre)
               for i, t in enumerate(items)]
    else:
        out = [array_to_input(a, pre, f"arrays[{i}]") for i, a in enumerate(items)]
    return out, _body_k(doc)


def _body_k(doc: dict) -> int | None:
    k = doc.get("top_k")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool)):
        raise BadInput(f"top_k must be an integer, got {shown(k)}")
    return k


async def _texts_from_request(request: Request, limit: int) -> tuple[list[str], str, int | None]:
    doc = load_json(await request.body(), "the request body")
    if not isinstance(doc, dict):
        raise BadInput('the body must be a JSON object with "texts" (a list of strings) or "text" (a string)')
    if ("text" in doc) == ("texts" in doc):
        raise BadInput('give exactly one of "texts" (a list of strings) or "text" (a string)')
    field = "texts" if "texts" in doc else "text"
    raw = doc[field] if field == "texts" else [doc["text"]]
    return check_texts(raw, field, limit), field, _body_k(doc)


@router.post("/{model}/classify")
async def classify(model: str, request: Request, repo: Repo, settings: Config,
                   top_k: int | None = Query(None, description="labels to return per image")) -> dict:
    loaded = repo.get(model)
    task = loaded.card.task
    if task == "text-classification" and loaded.tokenizer is not None:
        texts, field, body_k = await _texts_from_request(request, loaded.batcher.max_batch_size)
    elif task == "image-classification":
        images, body_k = await _images_from_request(request, loaded.card.preprocess)
    else:
        raise BadInput(f"model {shown(model)} is {task_noun(task)}; /classify serves image and subword text classifiers")
    loaded = repo.get(model)  # again after the last await: a reload may have swapped the version meanwhile
    k = next((v for v in (top_k, body_k) if v is not None), 3)  # 0 is a value, not "not given"
    k = min(k, len(loaded.card.labels)) if k > 0 else k
    if task == "text-classification":
        results = await classify_texts(loaded, texts, k=k, timeout_s=settings.request_timeout_s, field=field)
    else:
        results = await classify_images(loaded, images, k=k, timeout_s=settings.request_timeout_s)
    return {"model": loaded.name, "version": str(loaded.version), "predictions": results}
