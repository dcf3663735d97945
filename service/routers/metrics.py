"""GET /metrics in the Prometheus text exposition format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from service.metrics import exposition

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def metrics() -> Response:
    body, ctype = exposition()
    return Response(body, media_type=ctype)
