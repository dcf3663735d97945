"""POST /v1/models/{model}/score: the log-probability of each token of a text and of the whole text.

Body `{"text": "..."}`. Response: per-token `logprob` (natural log), their sum `logprob`, `cross_entropy`
(nats per token), `bits_per_token` and `perplexity`. For the n-gram models the figures equal those their
ARPA file gives for the same text.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.deps import Config, ModelName, Repo
from service.responses import JSON
from service.schemas.base import parse_json
from service.schemas.operations import MODEL_ERRORS, errors, json_body
from service.schemas.tasks import ScoreRequest, ScoreResponse

router = APIRouter(prefix="/v1/models", tags=["tasks"])


@router.post("/{model}/score", response_model=ScoreResponse, responses=errors(*MODEL_ERRORS),
             openapi_extra=json_body(ScoreRequest))
async def score(model: ModelName, request: Request, repo: Repo, settings: Config):
    repo.entry(model)  # an unknown model is a 404 before the body is read
    text = parse_json(ScoreRequest, await request.body()).text
    async with repo.acquire(model) as served:
        return JSON(await served.score(text, timeout_s=settings.request_timeout_s))
