"""Open Inference Protocol health and server metadata."""

from __future__ import annotations

from fastapi import APIRouter, Request
from service.responses import JSON

from service import __version__
from service.deps import Repo
from service.http_errors import error
from service.runtime.repository import ModelState
from service.schemas.operations import Error
from service.schemas.v2 import Live, Ready, ServerMetadata

router = APIRouter(tags=["health"])
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "metrics"]


@router.get("/v2/health/live", response_model=Live)
async def live():
    return JSON({"live": True})


NOT_READY = {503: {"model": Error, "description": "Not ready: the start-up load has not finished, or no model serves."}}


@router.get("/v2/health/ready", response_model=Ready, responses=NOT_READY)
async def ready(request: Request, repo: Repo):
    """Ready once the start-up load has finished and at least one model serves, until shutdown begins."""
    state = request.app.state
    if state.draining:
        return error(503, "not ready: shutting down")
    ok = state.started and any(e.state == ModelState.READY for e in repo.entries())
    return JSON({"ready": True}) if ok else error(503, "not ready: no model is loaded yet")


@router.get("/v2", response_model=ServerMetadata)
async def server_metadata():
    return JSON({"name": "zooserve", "version": __version__, "extensions": EXTENSIONS})
