"""schemathesis over the live /openapi.json: generated requests, valid and invalid, to every operation of a
real server, whose answers must be no 5xx, a status the operation declares, a declared content type, and a
body and headers that fit the declared schema.

The server is `python -m service.cli` on 127.0.0.1 (tests/service/serve_fixture.py) over the test
classifier of tests/service/conftest.py in two versions, the tiny GAN and VAE of generative_models.py, and
shipped models of every task;
tests/service/fuzz_hooks.py steers the generated model names to them. schemathesis runs as its CLI
(`schemathesis run`, settings in tests/service/schemathesis.toml): seeded and deterministic. Repository load
and unload change what the other operations see, so they run last, in a run of their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.service.conftest import RepoWriter
from tests.service.fuzz_hooks import SHIPPED, TEST_MODEL
from tests.service.generative_models import add_generative
from tests.service.serve_fixture import ROOT, clean_env, running_server

pytest.importorskip("schemathesis")

CONFIG = Path(__file__).with_name("schemathesis.toml")
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "response_headers_conformance")
ADMIN = "^/v2/repository/models/"  # load and unload
ADMIN_KEY = "fuzz-admin-key"  # repository control is on for this server; only the load/unload run sends the key


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "models"
    writer = RepoWriter(root).add(TEST_MODEL, 1).add(TEST_MODEL, 2)
    add_generative(writer, "dcgan", "gan")
    add_generative(writer, "vae", "vae")
    for name in SHIPPED:
        (root / name).symlink_to(ROOT / "models" / name)
    env = {"ZOOSERVE_MODEL_VERSIONS": json.dumps({TEST_MODEL: [1, 2]}), "ZOOSERVE_GENERATION_MAX_TOKENS": "24",
           "ZOOSERVE_LOG_LEVEL": "warning", "ZOOSERVE_REPOSITORY_CONTROL": "true", "ZOOSERVE_ADMIN_KEY": ADMIN_KEY}
    with running_server(root, workdir=root.parent / "run", env=env) as srv:
        yield srv


def fuzz(server, report: Path, *selection: str) -> dict[str, Counter]:
    """Run schemathesis over the server's schema, failing with its output unless every check passed;
    return the status codes each operation answered (from schemathesis's NDJSON event report)."""
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color", "run",
           f"{server.base_url}/openapi.json", "--checks", CHECKS, "--report", "ndjson",
           "--report-ndjson-path", str(report), *selection]
    # cwd: schemathesis keeps a cache folder there; the hooks import through clean_env()'s PYTHONPATH.
    done = subprocess.run(cmd, cwd=report.parent, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:] + server.log()[-5000:]
    statuses = defaultdict(Counter)
    for line in report.read_text().splitlines():
        scenario = json.loads(line).get("ScenarioFinished")
        for exchange in (scenario or {}).get("recorder", {}).get("interactions", {}).values():
            statuses[scenario["recorder"]["label"]][exchange["response"]["status_code"]] += 1
    return statuses


def reached(statuses: dict[str, Counter]) -> set[str]:
    """The operations that answered at least once with a 2xx: the requests got past the 404s and 400s."""
    return {label for label, codes in statuses.items() if any(200 <= code < 300 for code in codes)}


def test_every_operation_answers_as_its_schema_says(server, tmp_path):
    statuses = fuzz(server, tmp_path / "events.ndjson", "--exclude-path-regex", ADMIN)
    assert len(statuses) == 22 and sum(codes.total() for codes in statuses.values()) > 1000
    # Every operation is reached, except the versioned infer: its generated Inference-Header-Content-Length
    # headers rarely fit the body.
    assert set(statuses) - reached(statuses) <= {"POST /v2/models/{model}/versions/{version}/infer"}, statuses


def test_load_and_unload_answer_as_their_schema_says(server, tmp_path):  # after the others: they change state
    statuses = fuzz(server, tmp_path / "events.ndjson", "--include-path-regex", ADMIN,
                    "--header", f"X-Admin-Key: {ADMIN_KEY}")
    assert reached(statuses) == {"POST /v2/repository/models/{model}/load",
                                 "POST /v2/repository/models/{model}/unload"}, statuses
