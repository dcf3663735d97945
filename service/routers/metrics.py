"""GET /metrics in the Prometheus text exposition format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from service.metrics import exposition

router = APIRouter(tags=["metrics"])
EXPOSITION = {200: {"description": "the Prometheus text exposition format (the metrics are listed in docs/api.md)",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}}


@router.get("/metrics", response_class=Response, responses=EXPOSITION)
async def metrics() -> Response:
    body, ctype = exposition()
    return Response(body, media_type=ctype)
