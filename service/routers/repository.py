"""Open Inference Protocol repository extension: index, load, unload at run time."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.deps import ModelName, Repo
from service.responses import JSON
from service.runtime.errors import ModelLoadError, shown
from service.runtime.repository import ModelState
from service.schemas.base import parse_json
from service.schemas.operations import errors, json_body
from service.schemas.v2 import IndexRequest, IndexRow, LoadRequest, LoadResponse, UnloadRequest, UnloadResponse

router = APIRouter(prefix="/v2/repository", tags=["repository"])


async def _options(request: Request, model, what: str):
    """An optional body: empty reads as `{}`."""
    raw = await request.body()
    return parse_json(model, raw if raw.strip() else b"{}", what)


@router.post("/index", response_model=list[IndexRow], responses=errors(400, 413),
             openapi_extra=json_body(IndexRequest, required=False))
async def index(repo: Repo, request: Request):
    """Every model version on disk or in memory, with its state, each followed by its further graphs
    (`<name>.<role>`). Body `{"ready": true}` lists only ready ones."""
    ready_only = (await _options(request, IndexRequest, "the index body")).ready
    known = {(e.name, e.version): e for e in repo.entries(graphs=True)}
    rows = []
    for name, versions in repo.scan().items():
        for v in versions:
            e = known.pop((name, v), None)
            rows.append({"name": name, "version": str(v), "state": e.state if e else ModelState.UNAVAILABLE,
                         "reason": e.reason if e else "not loaded"})
            for g in (known.pop((f"{name}.{role}", v)) for role in (e.roles if e else ())):
                rows.append({"name": g.name, "version": str(v), "state": g.state, "reason": g.reason})
    rows += [{"name": e.name, "version": str(e.version), "state": e.state, "reason": e.reason} for e in known.values()]
    return JSON([r for r in rows if r["state"] == ModelState.READY] if ready_only else rows)


@router.post("/models/{model}/load", response_model=LoadResponse, responses=errors(400, 401, 403, 404, 413, 500),
             openapi_extra=json_body(LoadRequest, required=False))
async def load(model: ModelName, repo: Repo, request: Request):
    """(Re)load a model's wanted versions from disk; the old session drains before it is released. A 500
    says which version failed and why (the versions that served before still serve). Admin only: 403 while
    repository control is off, 401 without the admin key."""
    await _options(request, LoadRequest, "the load body")
    entries = await repo.load(model)
    failed = [e for e in entries if e.state != ModelState.READY]
    if failed:  # the server's own files are at fault, not the request: a server-side status
        serving = [e.version for e in repo.versions(model) if e.state == ModelState.READY]
        raise ModelLoadError(f"failed to load {shown(model)}: "
                             + "; ".join(f"version {e.version}: {e.reason}" for e in failed)
                             + (f"; serving version(s) {serving} as before" if serving else ""))
    return JSON({"name": model, "versions": {str(e.version): {"state": e.state, "reason": e.reason} for e in entries}})


@router.post("/models/{model}/unload", response_model=UnloadResponse, responses=errors(400, 401, 403, 404, 413),
             openapi_extra=json_body(UnloadRequest, required=False))
async def unload(model: ModelName, repo: Repo, request: Request):
    await _options(request, UnloadRequest, "the unload body")
    await repo.unload(model)
    return JSON({"name": model, "state": ModelState.UNAVAILABLE})
