"""Open Inference Protocol repository extension: index, load, unload at run time."""

from __future__ import annotations

from fastapi import APIRouter, Request

from service.deps import Repo
from service.protocol.v2 import load_json
from service.runtime.errors import BadInput, ModelLoadError, shown
from service.runtime.repository import ModelState

router = APIRouter(prefix="/v2/repository", tags=["repository"])


@router.post("/index")
async def index(repo: Repo, request: Request) -> list[dict]:
    """Every model version on disk or in memory, with its state. Body `{"ready": true}` lists only ready ones."""
    body = await request.body()
    options = load_json(body, "the index body") if body.strip() else {}
    if not isinstance(options, dict):
        raise BadInput("the index body must be a JSON object such as {\"ready\": true}")
    ready_only = options.get("ready") is True
    known = {(e.name, e.version): e for e in repo.entries()}
    rows = []
    for name, versions in repo.scan().items():
        for v in versions:
            e = known.pop((name, v), None)
            rows.append({"name": name, "version": str(v), "state": e.state if e else ModelState.UNAVAILABLE,
                         "reason": e.reason if e else "not loaded"})
    rows += [{"name": e.name, "version": str(e.version), "state": e.state, "reason": e.reason} for e in known.values()]
    return [r for r in rows if r["state"] == ModelState.READY] if ready_only else rows


@router.post("/models/{model}/load")
async def load(model: str, repo: Repo) -> dict:
    """(Re)load a model's wanted versions from disk; the old session drains before it is released."""
    entries = await repo.load(model)
    failed = [e for e in entries if e.state != ModelState.READY]
    if failed:  # the server's own files are at fault, not the request: a server-side status
        serving = [e.version for e in repo.versions(model) if e.state == ModelState.READY]
        raise ModelLoadError(f"failed to load {shown(model)}: "
                             + "; ".join(f"version {e.version}: {e.reason}" for e in failed)
                             + (f"; serving version(s) {serving} as before" if serving else ""))
    return {"name": model, "versions": {str(e.version): {"state": e.state, "reason": e.reason} for e in entries}}


@router.post("/models/{model}/unload")
async def unload(model: str, repo: Repo) -> dict:
    await repo.unload(model)
    return {"name": model, "state": ModelState.UNAVAILABLE}
