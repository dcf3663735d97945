"""Open Inference Protocol health and server metadata."""

from __future__ import annotations

from fastapi import APIRouter, Request
from service.responses import JSON

from service import __version__
from service.deps import Repo
from service.errors import error
from service.runtime.repository import ModelState

router = APIRouter(tags=["health"])
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "metrics"]


@router.get("/v2/health/live")
async def live() -> dict:
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(request: Request, repo: Repo):
    """Ready once the start-up load has finished and at least one model serves, until shutdown begins."""
    state = request.app.state
    if state.draining:
        return error(503, "not ready: shutting down")
    ok = state.started and any(e.state == ModelState.READY for e in repo.entries())
    return JSON({"ready": True}) if ok else error(503, "not ready: no model is loaded yet")


@router.get("/v2")
async def server_metadata() -> dict:
    return {"name": "zooserve", "version": __version__, "extensions": EXTENSIONS}
