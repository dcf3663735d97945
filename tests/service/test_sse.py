"""sse.EventStream, the streaming response of generate_stream and /v1/completions, driven as ASGI directly:
what goes on the wire, the in-band error, and a client that leaves mid-stream."""

from __future__ import annotations

import asyncio

from starlette.background import BackgroundTask

from service.runtime.errors import BadInput
from service.sse import EventStream
from tests.service.conftest import run


def test_events_go_out_one_write_per_batch_then_the_end_and_the_close_hooks_run():
    sent, calls = [], []

    async def source():
        yield [{"i": 0}, {"i": 1}]
        yield ["[DONE]"]

    async def receive():  # the body was read; nothing more comes until the response is over
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    async def background():
        calls.append("background")

    async def body():
        stream = EventStream(source(), lambda: calls.append("close"))
        stream.background = BackgroundTask(background)
        await stream({"type": "http"}, receive, send)

    run(body)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert dict(sent[0]["headers"])[b"content-type"].startswith(b"text/event-stream")
    assert [m.get("body") for m in sent[1:]] == [b'data: {"i":0}\n\ndata: {"i":1}\n\n', b"data: [DONE]\n\n", b""]
    assert [m["more_body"] for m in sent[1:]] == [True, True, False]
    assert calls == ["close", "background"]


def test_an_error_after_the_start_is_an_event_in_the_routes_shape():
    sent = []

    async def source():
        yield [{"i": 0}]
        raise BadInput("temperature must be finite")

    async def receive():
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    run(lambda: EventStream(source(), lambda: None, "/v1/completions")({"type": "http"}, receive, send))
    assert b'"type":"invalid_request_error"' in sent[2]["body"] and b"temperature" in sent[2]["body"]
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


def test_a_client_that_leaves_mid_stream_cancels_the_source_and_frees_it_at_once():
    state = {"closed": 0, "source_ended": False}
    gone = asyncio.Event()

    async def source():
        try:
            yield [{"i": 0}]
            await asyncio.Event().wait()  # the next tokens never come
            yield [{"i": 1}]
        finally:
            state["source_ended"] = True

    async def receive():
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message.get("body"):
            gone.set()  # the client reads the first event and leaves

    async def body():
        stream = EventStream(source(), lambda: state.__setitem__("closed", state["closed"] + 1))
        await asyncio.wait_for(stream({"type": "http"}, receive, send), timeout=5)
        await asyncio.sleep(0)  # the cancelled source unwinds on the loop's next turn
        await asyncio.sleep(0)

    run(body)
    assert state == {"closed": 1, "source_ended": True}
