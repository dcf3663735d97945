"""Server-sent events: the one encoder both streaming endpoints use (`data: <json>` lines, blank-line ended).

Each item of the source is a list of events ready together (several tokens when the client reads slower
than the model steps); they go out in one write, so a busy server sends fewer, larger chunks.
"""

from __future__ import annotations

from typing import AsyncIterator, Callable

import orjson
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from service.http_errors import error_body
from service.runtime.errors import ServiceError

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering of the stream


def encode(event: dict | str) -> bytes:
    """One event; a str goes as it is (OpenAI's closing `[DONE]`)."""
    data = event.encode() if isinstance(event, str) else orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)
    return b"data: " + data + b"\n\n"


def response(source: AsyncIterator[list[dict | str]], on_close: Callable[[], None], path: str = "") -> StreamingResponse:
    """Stream `source`. An error after the stream has started can only be told in-band: `{"error": ...}`, in
    the shape of the route at `path` (service.http_errors.error_body).
    When the client disconnects, Starlette cancels the stream (the source's `finally` cancels its sequence);
    `on_close` runs after the response in every case, also when the stream never started."""

    async def body():
        try:
            async for events in source:
                yield b"".join(encode(e) for e in events)
        except ServiceError as exc:
            yield encode(error_body(exc.status, str(exc), path))

    async def close() -> None:  # a coroutine: Starlette would run a plain function in its thread pool
        on_close()

    return StreamingResponse(body(), media_type="text/event-stream", headers=HEADERS,
                             background=BackgroundTask(close))
