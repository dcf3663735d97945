"""Pure-ASGI middleware: body-size limit, API and admin keys, per-request metrics, and arrivals for the batchers.

Pure ASGI (not BaseHTTPMiddleware) so streamed responses pass through untouched and the hot path
stays short.
"""

from __future__ import annotations

import hmac
import re
import time

import orjson

from service import metrics
from service.http_errors import error_body
from service.runtime.engine.arrivals import Arrivals

OPEN_PATHS = ("/v2/health/", "/metrics", "/ui/")  # probes, scrapers and the playground's static files need no key
OPEN_PAGES = ("/", "/ui")  # nor the playground's page and the redirect to it (its API calls carry the key)


async def _send_error(scope, send, status: int, message: str, headers: list | None = None) -> None:
    body = orjson.dumps(error_body(status, message, scope.get("path", "")))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 for bodies over the limit, whether announced by Content-Length or streamed in chunks."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _send_error(scope, send, 413, f"request body of {int(length)} bytes is over the limit of {self.max_bytes}")
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await _send_error(scope, send, 413, f"request body is over the limit of {self.max_bytes} bytes")


class _TooLarge(Exception):
    pass


def _given_key(scope, header: bytes) -> bytes:
    """The key a request carries: `Authorization: Bearer KEY`, else the named header."""
    headers = dict(scope["headers"])
    auth = headers.get(b"authorization", b"")
    if auth.lower().startswith(b"bearer "):
        return auth[7:].strip()
    return headers.get(header, b"")


CONTROL = re.compile(r"/v2/repository/models/[^/]+/(?:load|unload)")  # repository control: the admin's alone


class ApiKey:
    """Requires `Authorization: Bearer KEY` or `X-API-Key: KEY`, compared in constant time. Repository
    control is left to `AdminOnly` (its key is the admin key, not this one)."""

    def __init__(self, app, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope["path"] in OPEN_PAGES or scope["path"].startswith(OPEN_PATHS)
                or CONTROL.fullmatch(scope["path"])):
            return await self.app(scope, receive, send)
        if not hmac.compare_digest(_given_key(scope, b"x-api-key"), self.key):
            return await _send_error(scope, send, 401, "missing or wrong API key (send Authorization: Bearer KEY or X-API-Key)",
                                     [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


class AdminOnly:
    """Load and unload: 403 while repository control is off (the default), else the admin key (Bearer or
    X-Admin-Key), compared in constant time. The index stays readable by inference clients."""

    def __init__(self, app, admin_key: str | None):
        self.app, self.key = app, admin_key.encode() if admin_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not CONTROL.fullmatch(scope["path"]):
            return await self.app(scope, receive, send)
        if self.key is None:
            return await _send_error(scope, send, 403, "repository control is off: models load at start-up only (an "
                                     "operator enables load and unload with ZOOSERVE_REPOSITORY_CONTROL=true and "
                                     "ZOOSERVE_ADMIN_KEY)")
        if not hmac.compare_digest(_given_key(scope, b"x-admin-key"), self.key):
            return await _send_error(scope, send, 401, "load and unload need the admin key (send Authorization: Bearer "
                                     "KEY or X-Admin-Key)", [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


class RequestMetrics:
    """Counts requests by model, route template and status code, and times them."""

    def __init__(self, app, repository=None):
        """`repository`: the model repository, which tells a served model's name from a made-up one."""
        self.app, self.repository = app, repository
        # (model, endpoint, code) -> (counter, histogram) children: labels() takes a lock and builds the
        # label tuple, once per series here instead of twice per request. Only known models get a key.
        self._series: dict[tuple[str, str, int], tuple] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        t0 = time.perf_counter()

        async def capture(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.INFLIGHT.inc()
        try:
            await self.app(scope, receive, capture)
        finally:
            metrics.INFLIGHT.dec()
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            model = (scope.get("path_params") or {}).get("model", "")
            series = self._series.get((model, endpoint, status)) or self._new_series(scope, model, endpoint, status)
            series[0].inc()
            series[1].observe(time.perf_counter() - t0)

    def _new_series(self, scope, model: str, endpoint: str, status: int) -> tuple:
        if model and not (self.repository is not None and self.repository.knows(model)):
            model = ""  # a made-up name must not create time series (unbounded label cardinality)
        key = (model, endpoint, status)
        if key not in self._series:
            self._series[key] = (metrics.REQUESTS.labels(model, endpoint, str(status)),
                                 metrics.REQUEST_SECONDS.labels(model, endpoint))
        return self._series[key]


_BATCHED = re.compile(r"/v2/models/([^/]+)(?:/versions/[0-9]+)?/infer|/v1/models/([^/]+)/(?:classify|score|sample|"
                      r"reconstruct|embed)")


class Announce:
    """Announces each request to a batched endpoint (V2 infer, /classify, /score, /sample, /reconstruct, /embed)
    to its model's batcher as soon as it is routed, before its body is read: a batch being formed may wait for
    it (engine.arrivals). The announcement ends when the request is queued (on any batcher: a VAE's /sample
    queues on its decoder's), or at the latest when its response is done."""

    def __init__(self, app, arrivals: Arrivals):
        self.app, self.arrivals = app, arrivals

    async def __call__(self, scope, receive, send):
        match = _BATCHED.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if match is None:
            return await self.app(scope, receive, send)
        announcement = self.arrivals.announce(match.group(1) or match.group(2))
        try:
            await self.app(scope, receive, send)
        finally:
            announcement.end()
