"""The generate extension (Triton's): POST /v2/models/{m}/generate and /v2/models/{m}/generate_stream.

Body `{"text_input": "...", "parameters": {"max_tokens": 64, "temperature": 0.8, "top_k": 0, "top_p": 1,
"repetition_penalty": 1, "seed": 1, "stop": ["\\n"], "logprobs": 3}}` (every parameter optional).
Answer `{"model_name", "model_version", "text_output", "details": {"finish_reason", "generated_tokens",
"prompt_tokens", "seed", "logprobs"?}}`; the stream sends one such event per token (`text_output` is the new
text) and `details` on the last one.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from service import sse
from service.deps import Config, Repo
from service.protocol.v2 import load_json
from service.runtime.errors import BadInput
from service.runtime.generation.request import PARAMETERS, Generation, parse, token_logprobs

router = APIRouter(prefix="/v2/models", tags=["generate"])


async def _start(model: str, request: Request, repo: Repo, settings: Config) -> Generation:
    repo.entry(model)  # an unknown model is a 404 before the body is read
    doc = load_json(await request.body(), "the request body")
    if not isinstance(doc, dict) or not isinstance(doc.get("parameters", {}), dict):
        raise BadInput('the body must be a JSON object {"text_input": "...", "parameters": {...}}')
    params = doc.get("parameters", {})
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise BadInput(f"unknown parameters {unknown}; known: {list(PARAMETERS)}")
    req = parse(doc.get("text_input"), params, settings, prompt_field="text_input")
    async with repo.acquire(model) as served:
        return served.generate(req)  # queued: the scheduler drains it before the model is released


def _head(gen: Generation) -> dict:
    return {"model_name": gen.model.name, "model_version": str(gen.model.version)}


@router.post("/{model}/generate")
async def generate(model: str, request: Request, repo: Repo, settings: Config) -> dict:
    gen = await _start(model, request, repo, settings)
    text, finish, choices = await gen.collect(request.receive)
    return {**_head(gen), "text_output": text, "details": gen.details(finish, choices)}


@router.post("/{model}/generate_stream")
async def generate_stream(model: str, request: Request, repo: Repo, settings: Config):
    gen = await _start(model, request, repo, settings)
    head, choices = _head(gen), []

    async def events():
        async for batch in gen.batches():
            out = []
            for e in batch:
                choices.append(e.choice)
                doc = {**head, "text_output": e.text, "index": len(choices) - 1}
                if gen.req.logprobs is not None:
                    doc["logprobs"] = token_logprobs(gen.texts, e.choice)
                if e.finish:
                    doc["details"] = {k: v for k, v in gen.details(e.finish, choices).items() if k != "logprobs"}
                out.append(doc)
            yield out

    return sse.response(events(), gen.close)
