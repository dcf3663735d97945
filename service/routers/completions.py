"""OpenAI-compatible POST /v1/completions, with and without `stream` (the unchanged `openai` client works).

Sampling fields: max_tokens, temperature, top_p, seed, stop, logprobs, plus `top_k` and `repetition_penalty`
(pass them with the client's `extra_body`). Fields this server cannot honour (n > 1, echo, suffix,
logit_bias, presence/frequency penalties, best_of) are refused with 400 rather than ignored.
The stream ends with `data: [DONE]`; `stream_options.include_usage` adds a last chunk with the usage.
The body is `service.schemas.generate.CompletionRequest`.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request

from service import sse
from service.responses import JSON
from service.runtime.generation.request import Generation, parse
from service.runtime.generation.sampling import Choice
from service.schemas.base import parse_json
from service.schemas.generate import CompletionChunk, CompletionRequest, CompletionResponse
from service.schemas.operations import GENERATION_ERRORS, OpenAIError, errors, event_stream, json_body

router = APIRouter(prefix="/v1", tags=["openai"])
RESPONSES = {200: {"model": CompletionResponse, "description": "the completion; with `stream`, server-sent "
                   "events of CompletionChunk ending with `data: [DONE]`",
                   "content": event_stream(CompletionChunk, OpenAIError, done="[DONE]")},
             **errors(*GENERATION_ERRORS, openai=True)}


def _logprobs(gen: Generation, choices: list[Choice]) -> dict | None:
    if gen.req.logprobs is None:
        return None
    texts = gen.texts
    return {"tokens": [texts[c.token] for c in choices], "token_logprobs": [c.logprob for c in choices],
            "top_logprobs": [{texts[t]: lp for t, lp in c.top} for c in choices]}


def _usage(gen: Generation, completion_tokens: int) -> dict:
    return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": gen.prompt_tokens + completion_tokens}


async def answer(state, body: bytes, receive, path: str) -> JSON | sse.EventStream:
    """POST /v1/completions, from either entrance (the route below, or service.fastpath); `receive`: the
    request's ASGI channel, watched for a client that leaves; `path`: the request's, for the error shape."""
    repo = state.repository
    doc = parse_json(CompletionRequest, body)
    repo.entry(doc.model)  # 404 for an unknown model, before the prompt and sampling checks
    prompt = doc.prompt[0] if isinstance(doc.prompt, list) and len(doc.prompt) == 1 else doc.prompt
    req = parse(prompt, doc.model_dump(), state.settings, prompt_field="prompt")
    include_usage = doc.stream_options is not None and doc.stream_options.include_usage
    async with repo.acquire(doc.model) as served:
        gen = served.generate(req)  # queued: the scheduler drains it before the model is released
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": gen.model.name, "system_fingerprint": f"seed-{gen.seed}"}
    if not doc.stream:
        text, finish, events = await gen.collect(receive)
        return JSON({**head, "choices": [{"text": text, "index": 0,
                                          "logprobs": _logprobs(gen, [e.choice for e in events]),
                                          "finish_reason": finish}], "usage": _usage(gen, len(events))})

    async def chunks():
        count = 0
        async for batch in gen.batches():
            count += len(batch)
            yield [{**head, "choices": [{"text": e.text, "index": 0, "logprobs": _logprobs(gen, [e.choice]),
                                         "finish_reason": e.finish}], **({"usage": None} if include_usage else {})}
                   for e in batch]
        yield ([{**head, "choices": [], "usage": _usage(gen, count)}] if include_usage else []) + ["[DONE]"]

    return sse.EventStream(chunks(), gen.close, path)


# The route documents the endpoint in OpenAPI; service.fastpath answers it ahead of FastAPI.
@router.post("/completions", responses=RESPONSES, openapi_extra=json_body(CompletionRequest))
async def completions(request: Request):
    return await answer(request.app.state, await request.body(), request.receive, request.url.path)
