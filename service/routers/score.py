"""POST /v1/models/{model}/score: the log-probability of each token of a text and of the whole text.

Body `{"text": "..."}`. Response: per-token `logprob` (natural log), their sum `logprob`, `cross_entropy`
(nats per token), `bits_per_token` and `perplexity`. For the n-gram models the figures equal those their
ARPA file gives for the same text.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.deps import Config, Repo
from service.protocol.v2 import load_json
from service.runtime.errors import BadInput

router = APIRouter(prefix="/v1/models", tags=["tasks"])


@router.post("/{model}/score")
async def score(model: str, request: Request, repo: Repo, settings: Config) -> dict:
    repo.entry(model)  # an unknown model is a 404 before the body is read
    doc = load_json(await request.body(), "the request body")
    if not isinstance(doc, dict) or "text" not in doc:
        raise BadInput('the body must be a JSON object {"text": "..."}')
    async with repo.acquire(model) as served:
        return await served.score(doc["text"], timeout_s=settings.request_timeout_s)
