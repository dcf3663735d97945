"""The HTTP layer's errors: every exception becomes a JSON body with the right status (the data plane's are
in service/runtime/errors.py). Nothing a client sends becomes a 500.

The body is `{"error": "..."}`, except on the OpenAI-compatible routes (`/v1/completions`, `/v1/models`),
which answer in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: the unchanged `openai`
client reads the message from there (with a plain string it shows only "Error code: 404").
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from service.responses import JSON
from starlette.exceptions import HTTPException

from service.runtime.errors import Overloaded, ServiceError
from service.schemas.base import describe

log = logging.getLogger(__name__)


OPENAI_PATHS = frozenset({"/v1/completions", "/v1/models"})
_OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}
_OPENAI_CODES = {401: "invalid_api_key", 404: "model_not_found", 413: "request_too_large", 503: "overloaded",
                 504: "timeout"}
# BadInput messages about one field begin with its name: '"stop" must ...', 'temperature must be ...'.
_FIELD = re.compile(r'^"?([a-z_]+)"?(?= must | = | has | is |: )')


def error_body(status: int, message: str, path: str = "") -> dict:
    """The error document for a request to `path`: zooserve's `{"error": message}`, or OpenAI's shape."""
    if path not in OPENAI_PATHS:
        return {"error": message}
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    field = _FIELD.match(message)
    param = "model" if status == 404 else field and field.group(1)
    return {"error": {"message": message, "type": kind, "param": param, "code": _OPENAI_CODES.get(status)}}


def error(status: int, message: str, headers: dict | None = None, path: str = "") -> JSON:
    return JSON(error_body(status, message, path), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(request: Request, exc: ServiceError):
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else None
        return error(exc.status, str(exc), headers, request.url.path)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):  # path and query parameters
        return error(400, describe(exc.errors()), path=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(500, "internal error; see the server log", path=request.url.path)
