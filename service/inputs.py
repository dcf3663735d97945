"""The bodies of the endpoints that take images (or texts): a multipart form of `files`, or one JSON body of
several kinds (`images`, `arrays`, and for /classify `texts` or `text`). /classify, /reconstruct and /embed
read them here alike; decoding and checking them against the card (which kind of input, how many, the image
size) is the model's (runtime.tasks).
"""

from __future__ import annotations

from fastapi import Request

from service.protocol.v2 import load_json
from service.runtime.errors import BadInput
from service.runtime.tasks.base import ClassifyRequest
from service.schemas.base import Body, parse
from service.schemas.tasks import MAX_IMAGES

KINDS = {"images": '"images" (base64 PNG/JPEG)', "arrays": '"arrays" (pixel lists)',
         "texts": '"texts" (a list of strings)', "text": '"text" (a string)'}
FILES = {"type": "object", "required": ["files"], "properties": {"files": {
    "type": "array", "items": {"type": "string", "format": "binary"}, "maxItems": MAX_IMAGES,
    "description": "PNG or JPEG files"}}}


def _one_of(keys) -> str:
    named = [KINDS[k] for k in keys]
    return ", ".join(named[:-1]) + f" or {named[-1]}"


async def read_inputs(request: Request, bodies: dict[str, type[Body]]) -> tuple[ClassifyRequest, Body | None]:
    """The body as it came: multipart files, or the one of `bodies` (JSON field -> body model) it holds. Returns
    the items and the parsed JSON body (None for multipart), whose other fields (top_k, format) the route reads."""
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
        return ClassifyRequest(images=images), None
    doc = load_json(await request.body(), "the request body")
    choices = _one_of(bodies)
    if not isinstance(doc, dict):
        raise BadInput(f"the body must be a JSON object with {choices}")
    given = [key for key in bodies if key in doc]
    if len(given) != 1:
        raise BadInput(f"give exactly one of {choices}")
    field = given[0]
    parsed = parse(bodies[field], doc)
    top_k = getattr(parsed, "top_k", None)
    if field == "images":
        return ClassifyRequest(images=[(f"images[{i}]", t) for i, t in enumerate(parsed.images)], top_k=top_k), parsed
    if field == "arrays":
        return ClassifyRequest(arrays=[(f"arrays[{i}]", a) for i, a in enumerate(parsed.arrays)], top_k=top_k), parsed
    texts = parsed.texts if field == "texts" else [parsed.text]
    return ClassifyRequest(texts=texts, field=field, top_k=top_k), parsed
