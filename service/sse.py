"""Server-sent events: the one encoder and the one response both streaming endpoints use (`data: <json>`
lines, blank-line ended).

Each item of the source is a list of events ready together (several tokens when the client reads slower
than the model steps); they go out in one write, so a busy server sends fewer, larger chunks.
"""

from __future__ import annotations

from typing import AsyncIterator, Callable

import orjson
from starlette.responses import Response

from service.http_errors import error_body
from service.runtime.errors import ServiceError
from service.runtime.generation.request import unless_disconnected

HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
           (b"x-accel-buffering", b"no")]  # no proxy buffering of the stream


def encode(event: dict | str) -> bytes:
    """One event; a str goes as it is (OpenAI's closing `[DONE]`)."""
    data = event.encode() if isinstance(event, str) else orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)
    return b"data: " + data + b"\n\n"


class EventStream(Response):
    """Stream `source` as server-sent events; `on_close` runs once the response is over, however it ends.

    An error after the stream has started can only be told in-band: `{"error": ...}`, in the shape of the
    route at `path` (service.http_errors.error_body). A client that disconnects ends the stream at once: the
    source is cancelled (its `finally` cancels its sequence) and `on_close` frees the slot.

    Why not Starlette's StreamingResponse: under uvicorn (ASGI spec 2.3) it runs every stream in an anyio
    task group with cancel scopes to listen for the disconnect. Two plain tasks and asyncio.wait
    (request.unless_disconnected, as a non-stream answer waits too) do the same job for less of the event loop's time per request (docs/generation.md), which is what 32 streams
    arriving together queue on."""

    media_type = "text/event-stream"

    def __init__(self, source: AsyncIterator[list[dict | str]], on_close: Callable[[], None], path: str = ""):
        # Response.__init__ would render a body; a stream has none up front.
        self.source, self.on_close, self.path = source, on_close, path
        self.status_code, self.background = 200, None

    async def __call__(self, scope, receive, send) -> None:
        try:  # a bug in the source is raised here: uvicorn logs it and closes the connection
            await unless_disconnected(self._send(send), receive, lambda: None)
        finally:
            self.on_close()
        if self.background is not None:  # as Starlette's responses run theirs, also after a disconnect
            await self.background()

    async def _send(self, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        try:
            async for events in self.source:
                await send({"type": "http.response.body", "body": b"".join(encode(e) for e in events),
                            "more_body": True})
        except ServiceError as exc:
            await send({"type": "http.response.body", "body": encode(error_body(exc.status, str(exc), self.path)),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

