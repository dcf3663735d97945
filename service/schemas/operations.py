"""What the routers attach to their operations for OpenAPI: the error responses each can give, with the
error body's schema, and the request bodies the handlers parse themselves (tensors, multipart, JSON read
whatever its Content-Type), which FastAPI cannot see from the handler's signature.

Models referred to by `ref(Model)` are added to `components/schemas` by `service.docs`, which looks them up
by name in `service.schemas`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Error(BaseModel):
    """zooserve's error body."""

    error: str = Field(description="what went wrong; for bad input, the field, what it must be and what came",
                       examples=['"top_k" must be an integer, got "3"'])


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, permission_error or server_error")
    param: str | None = Field(description="the request field at fault, when one is")
    code: str | None = Field(description="model_not_found, invalid_api_key, request_too_large, overloaded, timeout")


class OpenAIError(BaseModel):
    """OpenAI's error body, on the OpenAI-compatible routes: the `openai` client reads the message from it."""

    error: OpenAIErrorDetail


WHY = {
    400: "Bad input: the message names the field, what it must be and what came.",
    401: "Missing or wrong key: the API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`), or on load and "
         "unload the admin key (`Authorization: Bearer KEY` or `X-Admin-Key: KEY`).",
    403: "Repository control is off (the default): load and unload need ZOOSERVE_REPOSITORY_CONTROL=true.",
    404: "Unknown model or version.",
    413: "The body is over ZOOSERVE_MAX_BODY_BYTES (after decompression).",
    499: "The client disconnected before the answer was ready (counted in the metrics; nobody reads it).",
    500: "The server failed: the model failed on this request (onnxruntime's message, first line), or its files "
         "failed to load (the message names them); never the client's fault.",
    503: "The model is not ready (loading, unloading or failed to load), or its queue is full: then "
         "`Retry-After` gives the seconds to wait.",
    504: "The request waited in the queue past ZOOSERVE_REQUEST_TIMEOUT_S and did not run.",
}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying (when the queue is full)",
                               "schema": {"type": "integer", "minimum": 0}}}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
MODEL_ERRORS = (400, 404, 413, 500, 503, 504)  # a request that runs a model through its batcher
GENERATION_ERRORS = (400, 404, 413, 499, 503)  # ... through its generation scheduler (no queue deadline)


def errors(*statuses: int, openai: bool = False) -> dict[int, dict]:
    """`responses=` for an operation: each status with its reason and the route's error body."""
    body = OpenAIError if openai else Error
    out = {}
    for status in statuses:
        out[status] = {"model": body, "description": WHY[status]}
        if status == 503:
            out[status]["headers"] = RETRY_AFTER
    return out


def ref(model: type[BaseModel]) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def body(content: dict[str, dict], *, required: bool = True, description: str = "") -> dict:
    """`openapi_extra=` declaring a request body the handler reads itself: media type -> schema."""
    doc = {"required": required, "content": {media: {"schema": schema} for media, schema in content.items()}}
    if description:
        doc["description"] = description
    return {"requestBody": doc}


def json_body(model: type[BaseModel], *, required: bool = True, description: str = "") -> dict:
    return body({"application/json": ref(model)}, required=required, description=description)


def event_stream(*events: type[BaseModel], done: str | None = None) -> dict:
    """Response `content` of server-sent events, each `data: <JSON>` of one of `events` (or the literal `done`).

    OpenAPI 3.1 has `schema` describe one event: an object whose `data` string holds JSON of that schema."""
    data = {"type": "string", "contentMediaType": "application/json",
            "contentSchema": {"anyOf": [ref(e) for e in events]} if len(events) > 1 else ref(events[0])}
    if done is not None:
        data = {"anyOf": [{"const": done}, data]}
    event = {"type": "object", "required": ["data"], "properties": {"data": data}}
    return {"text/event-stream": {"schema": event}}
