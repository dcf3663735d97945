"""OpenAI-compatible POST /v1/completions, with and without `stream` (the unchanged `openai` client works).

Sampling fields: max_tokens, temperature, top_p, seed, stop, logprobs, plus `top_k` and `repetition_penalty`
(pass them with the client's `extra_body`). Fields this server cannot honour (n > 1, echo, suffix,
logit_bias, presence/frequency penalties, best_of) are refused with 400 rather than ignored.
The stream ends with `data: [DONE]`; `stream_options.include_usage` adds a last chunk with the usage.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Request

from service import sse
from service.deps import Config, Repo
from service.protocol.v2 import load_json
from service.runtime.errors import BadInput, shown
from service.runtime.generation.request import Generation, parse
from service.runtime.generation.sampling import Choice

router = APIRouter(prefix="/v1", tags=["openai"])
UNSUPPORTED = {"n": 1, "best_of": 1, "echo": False, "suffix": None, "logit_bias": None, "presence_penalty": 0,
               "frequency_penalty": 0}


async def _request(doc, repo: Repo, settings: Config) -> tuple[Generation, bool, bool]:
    if not isinstance(doc, dict):
        raise BadInput('the body must be a JSON object {"model": "...", "prompt": "...", ...}')
    model = doc.get("model")
    if not isinstance(model, str):
        raise BadInput(f'"model" must be a string naming a model (see GET /v1/models), got {shown(model)}')
    repo.entry(model)  # 404 for an unknown model
    for field, default in UNSUPPORTED.items():
        if doc.get(field) is not None and doc[field] != default:
            raise BadInput(f'"{field}" = {shown(doc[field])} is not supported; only {shown(default)}')
    prompt = doc.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    stream, options = doc.get("stream") or False, doc.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise BadInput(f'"stream" must be true or false and "stream_options" an object, got {shown(stream)}, {shown(options)}')
    req = parse(prompt, doc, settings, prompt_field="prompt")
    async with repo.acquire(model) as served:
        gen = served.generate(req)  # queued: the scheduler drains it before the model is released
    return gen, stream, bool(options.get("include_usage"))


def _logprobs(gen: Generation, choices: list[Choice]) -> dict | None:
    if gen.req.logprobs is None:
        return None
    texts = gen.texts
    return {"tokens": [texts[c.token] for c in choices], "token_logprobs": [c.logprob for c in choices],
            "top_logprobs": [{texts[t]: lp for t, lp in c.top} for c in choices]}


def _usage(gen: Generation, completion_tokens: int) -> dict:
    return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": gen.prompt_tokens + completion_tokens}


@router.post("/completions")
async def completions(request: Request, repo: Repo, settings: Config):
    doc = load_json(await request.body(), "the request body")
    gen, stream, include_usage = await _request(doc, repo, settings)
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": gen.model.name, "system_fingerprint": f"seed-{gen.seed}"}
    if not stream:
        text, finish, choices = await gen.collect(request.receive)
        return {**head, "choices": [{"text": text, "index": 0, "logprobs": _logprobs(gen, choices),
                                     "finish_reason": finish}], "usage": _usage(gen, len(choices))}

    async def chunks():
        count = 0
        async for batch in gen.batches():
            count += len(batch)
            yield [{**head, "choices": [{"text": e.text, "index": 0, "logprobs": _logprobs(gen, [e.choice]),
                                         "finish_reason": e.finish}], **({"usage": None} if include_usage else {})}
                   for e in batch]
        yield ([{**head, "choices": [], "usage": _usage(gen, count)}] if include_usage else []) + ["[DONE]"]

    return sse.response(chunks(), gen.close, request.url.path)
