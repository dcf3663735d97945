"""The playground: GET / redirects to /ui, one page that tries every model through the public API.

Its files are package data in service/playground/ (plain HTML, CSS and JavaScript modules: no build step,
nothing fetched from anywhere else), read once and served from memory. `Cache-Control: no-cache` with an
ETag: the browser asks again each time and gets a 304 while the files are the same, and sees a new release
at once. A Content-Security-Policy lets the page load only its own files and talk only to its own origin,
with no inline script or style, and no framing. The files hold no data, so they need no API key (see
middleware.ApiKey); the requests the page makes carry the key the user gives it.

app.py includes this router only when `settings.playground` is on; off, /ui is a 404.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from service.http_errors import error
from service.runtime.errors import shown

router = APIRouter(include_in_schema=False)
FILES = Path(__file__).resolve().parents[1] / "playground"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
CSP = ("default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
HEADERS = {"Cache-Control": "no-cache", "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


@functools.cache
def assets() -> dict[str, Asset]:
    """Each file the page may load, by its path below /ui/. Read on first use and kept: as package data they
    change only with a release, which restarts the server."""
    found = {}
    for path in sorted(FILES.rglob("*")):
        if path.is_file() and path.suffix in TYPES:
            body = path.read_bytes()
            found[path.relative_to(FILES).as_posix()] = Asset(body, TYPES[path.suffix],
                                                              f'"{hashlib.sha256(body).hexdigest()[:24]}"')
    return found


def _fresh(request: Request, etag: str) -> bool:
    """The client's copy (If-None-Match, weak or strong, or *) is this version of the file."""
    tags = {t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")}
    return etag in tags or "*" in tags


def _serve(request: Request, name: str) -> Response:
    asset = assets().get(name)
    if asset is None:  # only the files found above: a name never reaches the file system
        return error(404, f"the playground has no file {shown(name)}")
    headers = {"ETag": asset.etag, **HEADERS}
    if _fresh(request, asset.etag):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/")
async def root() -> Response:
    return RedirectResponse("ui")  # relative, so that it holds behind a proxy that adds a path prefix


@router.get("/ui")
async def page(request: Request) -> Response:
    return _serve(request, "index.html")


@router.get("/ui/{name:path}")
async def asset(request: Request, name: str) -> Response:
    # The page's relative URLs (ui/app.js, v1/models) resolve against /ui; from /ui/ they would not.
    return RedirectResponse("../ui") if name == "" else _serve(request, name)
