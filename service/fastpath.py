"""The hot POST endpoints in pure ASGI, ahead of FastAPI: V2 infer (`POST /v2/models/{model}[/versions/{n}]/infer`,
straight to `routers.infer.handle`), the generate extension (`/v2/models/{model}/generate` and
`generate_stream`, `routers.generate`) and OpenAI's `POST /v1/completions` (`routers.completions`); everything
else goes on to FastAPI.

Why: under load on 2 cores, FastAPI's per-request machinery (exception and exit-stack layers, route
matching over every router, the dependency solver, Request and Response wrappers) cost more CPU than
parsing the body, validating it, batching, running LeNet and encoding the answer together (py-spy,
benchmarks/serve_bench.py). For generation it was half the event loop's time per streamed request (1.2 of
~1.2 ms with the old streaming response, 0.55 ms without either, docs/generation.md), and 32 streams that
arrive together queue on that time before their first tokens. The FastAPI routes stay: they document the
endpoints in OpenAPI and serve what this layer leaves to them (an infer version that is not an integer gets
a 400); both entrances call the same functions.

It sits just inside the service's middleware (metrics, body limit, API key, CORS, arrivals), which run outside
FastAPI's own layers (service.app.Service), and puts the FastAPI route it stands in for into the scope, as
routing would, so the metrics label it alike.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from typing import Awaitable, Callable

from service.http_errors import error
from service.responses import JSON
from service.routers import completions, generate, infer
from service.runtime.errors import Overloaded, ServiceError

log = logging.getLogger(__name__)
_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([0-9]+))?/infer")
_GENERATE = re.compile(r"/v2/models/([^/]+)/generate(_stream)?")


class FastPath:
    def __init__(self, app, state):
        """`state`: the FastAPI app's state (repository, settings)."""
        self.app, self.state = app, state
        by_path = {r.path: r for m in (infer, generate, completions) for r in m.router.routes}
        self.infer_routes = {False: by_path[infer.LATEST], True: by_path[infer.VERSIONED]}
        self.generate_routes = {False: by_path["/v2/models/{model}/generate"],
                                True: by_path["/v2/models/{model}/generate_stream"]}
        self.completions_route = by_path["/v1/completions"]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        path = scope["path"]
        # The last segment picks the one pattern to try, so a request is matched against one regex at most.
        op = path[path.rfind("/") + 1:]
        if op == "infer" and (match := _INFER.fullmatch(path)):
            model, version = match.group(1), match.group(2)
            scope["path_params"] = {"model": model} if version is None else {"model": model, "version": version}
            scope["route"] = self.infer_routes[version is not None]
            return await self._infer(scope, receive, send, model, None if version is None else int(version))
        if op.startswith("generate") and (match := _GENERATE.fullmatch(path)):
            model, stream = match.group(1), match.group(2) is not None
            scope["path_params"], scope["route"] = {"model": model}, self.generate_routes[stream]
            answer = (partial(generate.stream, self.state, model) if stream else
                      partial(generate.answer, self.state, model, receive=receive))
            return await self._respond(scope, receive, send, answer)
        if path == "/v1/completions":
            scope["path_params"], scope["route"] = {}, self.completions_route
            return await self._respond(scope, receive, send,
                                       partial(completions.answer, self.state, receive=receive, path=path))
        return await self.app(scope, receive, send)

    async def _infer(self, scope, receive, send, model: str, version: int | None) -> None:
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        encoding = length = None
        for k, v in scope["headers"]:
            if k == b"content-encoding":
                encoding = v.decode("latin-1")
            elif k == b"inference-header-content-length":
                length = v.decode("latin-1")
        try:
            out, media, headers = await infer.handle(self.state, model, version, body, encoding, length)
        except Exception as exc:
            return await _failed(exc, scope)(scope, receive, send)
        raw = [(b"content-type", media.encode()), (b"content-length", str(len(out)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": out})

    async def _respond(self, scope, receive, send, answer: Callable[[bytes], Awaitable]) -> None:
        """Read the body, and send what `answer(body)` makes of it: a Starlette response, or the error."""
        body = await _read_body(receive)
        if body is None:
            return
        try:
            response = await answer(body)
        except Exception as exc:
            response = _failed(exc, scope)
        await response(scope, receive, send)


def _failed(exc: Exception, scope) -> JSON:
    """The error response for an exception raised before the answer began, as FastAPI's handlers make it
    (service.http_errors.install); a bug is answered here too, so the connection stays usable (uvicorn would
    drop it)."""
    if isinstance(exc, ServiceError):
        retry = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else None
        return error(exc.status, str(exc), retry, scope["path"])
    log.error("unhandled error on POST %s", scope["path"], exc_info=exc)
    return error(500, "internal error; see the server log", path=scope["path"])


async def _read_body(receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
