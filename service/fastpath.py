"""The V2 infer endpoint in pure ASGI: `POST /v2/models/{model}[/versions/{n}]/infer` straight to
`routers.infer.handle`, everything else on to FastAPI.

Why: under load on 2 cores, FastAPI's per-request machinery (exception and exit-stack layers, route
matching over every router, the dependency solver, Request and Response wrappers) cost more CPU than
parsing the body, validating it, batching, running LeNet and encoding the answer together (py-spy,
benchmarks/serve_bench.py). The FastAPI routes in routers/infer.py stay: they document the endpoint in
OpenAPI and serve what this layer leaves to them (a version that is not an integer gets a 400).

It sits just inside the service's middleware (metrics, body limit, API key, CORS, arrivals), and puts the
FastAPI route it stands in for into the scope, as routing would, so the metrics label it alike.
"""

from __future__ import annotations

import logging
import re

from service.http_errors import error
from service.routers.infer import LATEST, VERSIONED, handle, router
from service.runtime.errors import Overloaded, ServiceError

log = logging.getLogger(__name__)
_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([0-9]+))?/infer")


class InferFastPath:
    def __init__(self, app, state):
        """`state`: the FastAPI app's state (repository, settings)."""
        self.app, self.state = app, state
        by_path = {r.path: r for r in router.routes}
        self.routes = {False: by_path[LATEST], True: by_path[VERSIONED]}

    async def __call__(self, scope, receive, send):
        match = _PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if match is None:
            return await self.app(scope, receive, send)
        model, version = match.group(1), match.group(2)
        scope["path_params"] = {"model": model} if version is None else {"model": model, "version": version}
        scope["route"] = self.routes[version is not None]
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
            out, media, headers = await handle(self.state, model, None if version is None else int(version), body,
                                               encoding, length)
        except ServiceError as exc:
            retry = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else None
            return await error(exc.status, str(exc), retry)(scope, receive, send)
        except Exception:  # a bug: answer it here, so the connection stays usable (uvicorn would drop it)
            log.exception("unhandled error on POST %s", scope["path"])
            return await error(500, "internal error; see the server log")(scope, receive, send)
        raw = [(b"content-type", media.encode()), (b"content-length", str(len(out)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": out})


async def _read_body(receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
