"""The generate extension (Triton's): POST /v2/models/{m}/generate and /v2/models/{m}/generate_stream.

Body `{"text_input": "...", "parameters": {"max_tokens": 64, "temperature": 0.8, "top_k": 0, "top_p": 1,
"repetition_penalty": 1, "seed": 1, "stop": ["\\n"], "logprobs": 3}}` (every parameter optional).
Answer `{"model_name", "model_version", "text_output", "details": {"finish_reason", "generated_tokens",
"prompt_tokens", "seed", "logprobs"?}}`; the stream sends one such event per token (`text_output` is the new
text) and `details` on the last one. The bodies are `service.schemas.generate`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import StreamingResponse

from service import sse
from service.deps import ModelName
from service.responses import JSON
from service.runtime.generation.request import Generation, parse, token_logprobs
from service.schemas.base import parse_json
from service.schemas.generate import GenerateRequest, GenerateResponse, GenerateStreamEvent
from service.schemas.operations import GENERATION_ERRORS, Error, errors, event_stream, json_body

router = APIRouter(prefix="/v2/models", tags=["generate"])
STREAM = {200: {"description": "one event per token; an error after the stream began comes as an `{\"error\"}` "
                     "event", "content": event_stream(GenerateStreamEvent, Error)},
          **errors(*GENERATION_ERRORS)}


async def _start(state, model: str, body: bytes) -> Generation:
    state.repository.entry(model)  # an unknown model is a 404 before the body is parsed
    doc = parse_json(GenerateRequest, body)
    req = parse(doc.text_input, doc.parameters.model_dump(), state.settings, prompt_field="text_input")
    async with state.repository.acquire(model) as served:
        return served.generate(req)  # queued: the scheduler drains it before the model is released


def _head(gen: Generation) -> dict:
    return {"model_name": gen.model.name, "model_version": str(gen.model.version)}


async def answer(state, model: str, body: bytes, receive) -> JSON:
    """POST /v2/models/{model}/generate, from either entrance (the route below, or service.fastpath);
    `receive`: the request's ASGI channel, watched for a client that leaves."""
    gen = await _start(state, model, body)
    text, finish, events = await gen.collect(receive)
    details = gen.details(finish, len(events))
    if gen.req.logprobs is not None:
        details["logprobs"] = [token_logprobs(gen.texts, e.choice) for e in events]
    return JSON({**_head(gen), "text_output": text, "details": details})


async def stream(state, model: str, body: bytes) -> sse.EventStream:
    """POST /v2/models/{model}/generate_stream, from either entrance."""
    gen = await _start(state, model, body)
    head = _head(gen)

    async def events():
        count = 0
        async for batch in gen.batches():
            out = []
            for e in batch:
                doc = {**head, "text_output": e.text, "index": count}
                count += 1
                if e.choice is not None:  # the request asked for log-probabilities
                    doc["logprobs"] = token_logprobs(gen.texts, e.choice)
                if e.finish:
                    doc["details"] = gen.details(e.finish, count)
                out.append(doc)
            yield out

    return sse.EventStream(events(), gen.close)


# The routes document the endpoints in OpenAPI; service.fastpath answers them ahead of FastAPI.
@router.post("/{model}/generate", response_model=GenerateResponse, responses=errors(*GENERATION_ERRORS),
             openapi_extra=json_body(GenerateRequest))
async def generate(model: ModelName, request: Request):
    return await answer(request.app.state, model, await request.body(), request.receive)


@router.post("/{model}/generate_stream", response_class=StreamingResponse, responses=STREAM,
             openapi_extra=json_body(GenerateRequest))
async def generate_stream(model: ModelName, request: Request):
    return await stream(request.app.state, model, await request.body())
