"""The OpenAPI document at /openapi.json, and Swagger UI (/docs) and ReDoc (/redoc) served offline.

FastAPI writes the document from the routes; `complete` then adds what it cannot see:
- the models of the bodies the handlers parse themselves (tensors, multipart, JSON of any Content-Type),
  which the routes refer to by `$ref` only (`service.schemas.operations.ref`);
- no 422: validation errors are 400s here (`service.http_errors`), declared on each operation;
- with an API key set, the security schemes and a 401 on every operation that needs the key.

The viewers' JavaScript and CSS come from the `fastapi-offline` package (Swagger UI 5 and ReDoc 2, 2.8 MB),
served under /docs/static: a server without internet access, or a browser behind a strict proxy, still
shows the docs.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.http_errors import OPENAI_PATHS
from service.middleware import OPEN_PATHS
from service.schemas import generate, images, operations, tasks, v2
from service.settings import Settings

ASSETS = "/docs/static"
SCHEMAS = "#/components/schemas/"
MODELS = {name: obj for module in (v2, tasks, images, generate, operations) for name, obj in vars(module).items()
          if isinstance(obj, type) and issubclass(obj, BaseModel)}


def _refs(node) -> set[str]:
    """The component names every `$ref` below `node` points at."""
    if isinstance(node, dict):
        found = {node["$ref"].removeprefix(SCHEMAS)} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _add_referred_models(doc: dict) -> None:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    missing = _refs(doc) - set(schemas)
    unknown = missing - set(MODELS)
    if unknown:
        raise KeyError(f"OpenAPI refers to {sorted(unknown)}, which service.schemas does not define")
    if missing:
        _, defs = models_json_schema([(MODELS[name], "validation") for name in sorted(missing)],
                                     ref_template=SCHEMAS + "{model}")
        schemas.update({k: v for k, v in defs.get("$defs", {}).items() if k not in schemas})


def _require_key(doc: dict) -> None:
    doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"},
                                            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
    for path, item in doc["paths"].items():
        if path.startswith(OPEN_PATHS):
            continue
        body = SCHEMAS + ("OpenAIError" if path in OPENAI_PATHS else "Error")
        for op in item.values():
            op["security"] = [{"bearer": []}, {"apiKey": []}]
            op["responses"]["401"] = {"description": operations.WHY[401], "headers": operations.WWW_AUTHENTICATE,
                                      "content": {"application/json": {"schema": {"$ref": body}}}}


def complete(doc: dict, settings: Settings) -> dict:
    for item in doc["paths"].values():
        for op in item.values():
            op["responses"].pop("422", None)
    for name in ("HTTPValidationError", "ValidationError"):
        doc.get("components", {}).get("schemas", {}).pop(name, None)
    if settings.api_key:
        _require_key(doc)
    _add_referred_models(doc)
    return doc


def install(app: FastAPI, settings: Settings) -> None:
    """/openapi.json completed, /docs and /redoc from local assets (the app is made with docs_url=None)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = complete(FastAPI.openapi(app), settings)
        return app.openapi_schema

    app.openapi = openapi
    app.mount(ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=root + app.openapi_url, title=f"{app.title} - Swagger UI",
                                   swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})  # no badge from validator.swagger.io

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=root + app.openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{ASSETS}/favicon.png", with_google_fonts=False)
