"""A live /metrics scrape (after real traffic: classification, a bad request, and a generation request to a
language model): `promtool check metrics` finds nothing to complain about, and every series the Grafana
dashboard queries has samples in it (a declared metric with labels but no traffic would only show its
HELP and TYPE lines, which would not make a panel draw anything)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import images, infer_json

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import check_dashboard  # noqa: E402


LM = "island-lstm-int8"  # the smallest shipped language model (1.6 MB), served as test_generate.py does


@pytest.fixture
def live_scrape(make_repo, serve) -> str:
    repo = make_repo(("lin", 1))
    (repo.root / LM).symlink_to(ROOT / "models" / LM)

    async def body(client, app):
        for _ in range(3):
            assert (await client.post("/v2/models/lin/infer", json=infer_json(images(2)))).status_code == 200
        assert (await client.post("/v2/models/lin/infer", json={})).status_code == 400
        gen = await client.post(f"/v2/models/{LM}/generate",
                                json={"text_input": "The engineer", "parameters": {"max_tokens": 4, "seed": 1}})
        assert gen.status_code == 200 and gen.json()["details"]["generated_tokens"] == 4, gen.text
        return (await client.get("/metrics")).text

    return serve(repo.root, body)


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (apt-get install prometheus; .ci/run installs it)")
def test_promtool_accepts_a_live_scrape(live_scrape):
    done = subprocess.run(["promtool", "check", "metrics"], input=live_scrape.encode(), capture_output=True,
                          timeout=60)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert not (done.stdout + done.stderr).strip(), (done.stdout + done.stderr).decode()  # no lint findings


def test_every_dashboard_metric_has_samples_in_a_live_scrape(live_scrape):
    samples = {s.name for f in text_string_to_metric_families(live_scrape) for s in f.samples}
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/zooserve.json").read_text())
    used = {n for e in check_dashboard.exprs(dashboard) for n in re.findall(r"\bzooserve_[a-z0-9_]+", e)}
    assert {"zooserve_generated_tokens_total", "zooserve_time_to_first_token_seconds_bucket"} <= used
    missing = used - samples
    assert not missing, f"queried by the dashboard but without samples in the scrape: {sorted(missing)}"
