"""The playground's files and how they are served, without a browser (tests/service/test_playground_browser.py
drives the page in Chromium): the redirect, cache and security headers, every file the page loads, the
page open while the API asks for a key, the setting that turns it off, and rules on the files themselves
(no inline code, nothing from elsewhere, text never written as HTML) that keep the CSP and the page's
promise to add nothing to the API's attack surface."""

from __future__ import annotations

import fnmatch
import posixpath
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from service.routers.playground import CSP, FILES, assets

ROOT = Path(__file__).resolve().parents[2]
PAGE_FILES = sorted(p for p in FILES.rglob("*") if p.is_file())


class Page(HTMLParser):
    """What the page's HTML loads and anything inline in it."""

    def __init__(self):
        super().__init__()
        self.urls, self.inline, self.in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [attrs[a] for a in ("src", "href") if a in attrs]
        self.inline += [f"<{tag} {a}>" for a in attrs if a == "style" or a.startswith("on")]
        if tag == "style" or (tag == "script" and "src" not in attrs):
            self.inline.append(f"<{tag}> without src")
        self.in_script = tag == "script"

    def handle_endtag(self, tag):
        self.in_script = False

    def handle_data(self, data):
        if self.in_script and data.strip():
            self.inline.append("script text")


def page() -> Page:
    parser = Page()
    parser.feed((FILES / "index.html").read_text())
    return parser


def loaded_files() -> set[str]:
    """Every file below /ui/ the page loads: the HTML's links, then each module's imports, transitively."""
    found = {u.removeprefix("ui/") for u in page().urls if u.startswith("ui/")}
    todo = [f for f in found if f.endswith(".js")]
    while todo:
        name = todo.pop()
        for spec in re.findall(r'^import .* from "(\.[^"]+)";', (FILES / name).read_text(), re.M):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), spec))
            if target not in found:
                found.add(target)
                todo.append(target)
    return found


def test_root_redirects_to_the_page_served_with_cache_and_security_headers(make_repo, serve):
    async def body(client, app):
        root, ui = await client.get("/"), await client.get("/ui")
        again = await client.get("/ui", headers={"If-None-Match": ui.headers["etag"]})
        weak = await client.get("/ui", headers={"If-None-Match": f'"other", W/{ui.headers["etag"]}'})
        stale = await client.get("/ui", headers={"If-None-Match": '"other"'})
        slash = await client.get("/ui/")
        return root, ui, again, weak, stale, slash

    root, ui, again, weak, stale, slash = serve(make_repo(("lin", 1)).root, body)
    assert root.status_code == 307 and root.headers["location"] == "ui"  # relative: holds behind a path prefix
    assert slash.status_code == 307 and slash.headers["location"] == "../ui"
    assert ui.status_code == 200 and ui.headers["content-type"] == "text/html; charset=utf-8"
    assert ui.text == (FILES / "index.html").read_text()
    csp = ui.headers["content-security-policy"]
    assert csp == CSP and "default-src 'self'" in csp and "img-src 'self' data: blob:" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert ui.headers["x-content-type-options"] == "nosniff" and ui.headers["cache-control"] == "no-cache"
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == ui.headers["etag"]
    assert weak.status_code == 304 and stale.status_code == 200


def test_every_file_the_page_loads_is_served_with_its_type(make_repo, serve):
    wanted = loaded_files()
    assert {"app.js", "style.css", "panels.js", "panels/generate.js", "drawpad.js"} <= wanted
    assert wanted <= set(assets()), "the page loads a file the server does not serve"

    async def body(client, app):
        return {name: await client.get(f"/ui/{name}") for name in sorted(wanted)}

    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    for name, resp in serve(make_repo(("lin", 1)).root, body).items():
        assert resp.status_code == 200, name
        assert resp.headers["content-type"] == types[Path(name).suffix], name
        assert resp.content == (FILES / name).read_bytes(), name
        assert resp.headers["content-security-policy"] == CSP and resp.headers["x-content-type-options"] == "nosniff"


def test_names_outside_the_page_are_404_in_the_apis_shape(make_repo, serve):
    async def body(client, app):
        return [await client.get(p) for p in ("/ui/nope.js", "/ui/%2e%2e/settings.py", "/ui/..%2fapp.py",
                                              "/ui/panels/../../routers/playground.py")]

    answers = serve(make_repo(("lin", 1)).root, body)
    assert answers[0].json() == {"error": 'the playground has no file "nope.js"'}
    for resp in answers:  # the client may resolve the dots itself: then no route matches, still a 404
        assert resp.status_code == 404 and isinstance(resp.json()["error"], str)
        assert "/" + FILES.name not in resp.text and str(ROOT) not in resp.text  # no server path in the answer


def test_with_an_api_key_the_page_opens_and_the_api_still_asks_for_it(make_repo, serve):
    async def body(client, app):
        return [await client.get(p) for p in ("/", "/ui", "/ui/app.js", "/v1/models", "/v1/models/lin/card", "/uix")]

    root, ui, js, models, card, near = serve(make_repo(("lin", 1)).root, body, api_key="sesame")
    assert (root.status_code, ui.status_code, js.status_code) == (307, 200, 200)
    assert models.status_code == card.status_code == near.status_code == 401  # the exemption is the page's alone


def test_the_setting_turns_the_page_off(make_repo, serve):
    async def body(client, app):
        return [await client.get(p) for p in ("/", "/ui", "/ui/app.js", "/v1/models")]

    root, ui, js, models = serve(make_repo(("lin", 1)).root, body, playground=False)
    assert root.status_code == ui.status_code == js.status_code == 404 and models.status_code == 200


def test_the_page_has_no_inline_code_and_loads_nothing_from_elsewhere():
    parsed = page()
    assert not parsed.inline  # the CSP allows no inline script or style: it would not run
    assert parsed.urls and all(not re.match(r"^[a-z]+:|^//", u) or u.startswith("data:") for u in parsed.urls)
    for path in PAGE_FILES:
        text = path.read_text()
        assert not re.search(r"https?://|//cdn|@import url", text), path.name  # works offline, in the image too


def test_api_text_is_written_as_text_and_the_key_is_never_stored():
    scripts = [p for p in PAGE_FILES if p.suffix == ".js"]
    assert len(scripts) >= 8
    for path in scripts:
        text = re.sub(r"//.*", "", path.read_text())  # the code, without its comments
        for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                      "localStorage", "sessionStorage", "document.cookie", "setAttribute(\"style\""):
            assert risky not in text, f"{path.name} uses {risky}"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is new in Python 3.11")
def test_the_package_ships_every_file_of_the_page():
    """`pip install .` (the serving install and the Docker image) carries the page: pyproject's package data
    names every file in service/playground/."""
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service"]
    for path in PAGE_FILES:
        name = path.relative_to(FILES.parent).as_posix()
        assert any(fnmatch.fnmatch(name, p) for p in patterns), f"{name} is not package data"
