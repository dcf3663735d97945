"""Model metadata and readiness (Open Inference Protocol), and the model list for people."""

from __future__ import annotations

from fastapi import APIRouter
from service.responses import JSON

from service.deps import ModelName, Repo, Version
from service.http_errors import error
from service.runtime.errors import shown
from service.runtime.repository import Entry, ModelState
from service.schemas.generate import ModelList
from service.schemas.operations import errors
from service.schemas.v2 import ModelMetadata, ModelReady

router = APIRouter(tags=["models"])


def _metadata(entry: Entry, versions: list[int]) -> dict:
    doc = {"name": entry.name, "versions": [str(v) for v in versions], "platform": "onnxruntime_onnx",
           "state": entry.state}
    if entry.served:
        card = entry.served.card
        doc |= {
            "inputs": [s.model_dump() for s in card.inputs],
            "outputs": [s.model_dump() for s in card.outputs],
            "parameters": {"task": card.task, "family": card.family, "execution_provider": entry.served.session.provider,
                           "max_batch_size": entry.served.batcher.max_batch_size,
                           "max_delay_ms": entry.served.batcher.max_delay_s * 1000, "labels": card.labels},
        }
    if entry.reason:
        doc["reason"] = entry.reason
    return doc


@router.get("/v2/models/{model}", response_model=ModelMetadata, responses=errors(404))
async def model_metadata(model: ModelName, repo: Repo):
    return JSON(_metadata(repo.entry(model), [e.version for e in repo.versions(model)]))


@router.get("/v2/models/{model}/versions/{version}", response_model=ModelMetadata, responses=errors(400, 404))
async def version_metadata(model: ModelName, version: Version, repo: Repo):
    return JSON(_metadata(repo.entry(model, version), [version]))


async def _ready(repo: Repo, model: str, version: int | None):
    entry = repo.entry(model, version)
    if entry.state != ModelState.READY:
        return error(503, f"model {shown(model)} version {entry.version} is {entry.state}"
                     + (f": {entry.reason}" if entry.reason else ""))
    return JSON({"name": model, "version": str(entry.version), "ready": True})


@router.get("/v2/models/{model}/ready", response_model=ModelReady, responses=errors(404, 503))
async def model_ready(model: ModelName, repo: Repo):
    return await _ready(repo, model, None)


@router.get("/v2/models/{model}/versions/{version}/ready", response_model=ModelReady,
            responses=errors(400, 404, 503))
async def version_ready(model: ModelName, version: Version, repo: Repo):
    return await _ready(repo, model, version)


@router.get("/v1/models", response_model=ModelList)
async def list_models(repo: Repo):
    """Every model version the server knows, with its state and, when loaded, its task."""
    return JSON({"object": "list", "data": [
        {"id": e.name, "object": "model", "owned_by": "zooserve", "version": e.version, "state": e.state,
         **({"task": e.served.card.task, "family": e.served.card.family} if e.served else {}),
         **({"reason": e.reason} if e.reason else {})}
        for e in repo.entries()]})
