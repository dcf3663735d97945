"""A live /metrics scrape (after real traffic): `promtool check metrics` finds nothing to complain about,
and every metric the Grafana dashboard queries is in it (except the generation metrics, which come with
the generation endpoints and are named in deploy/check_dashboard.py)."""

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


@pytest.fixture
def live_scrape(make_repo, serve) -> str:
    repo = make_repo(("lin", 1))

    async def body(client, app):
        for _ in range(3):
            assert (await client.post("/v2/models/lin/infer", json=infer_json(images(2)))).status_code == 200
        assert (await client.post("/v2/models/lin/infer", json={})).status_code == 400
        return (await client.get("/metrics")).text

    return serve(repo.root, body)


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (apt-get install prometheus; .ci/run installs it)")
def test_promtool_accepts_a_live_scrape(live_scrape):
    done = subprocess.run(["promtool", "check", "metrics"], input=live_scrape.encode(), capture_output=True,
                          timeout=60)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert not (done.stdout + done.stderr).strip(), (done.stdout + done.stderr).decode()  # no lint findings


def test_every_dashboard_metric_is_in_a_live_scrape(live_scrape):
    families = {f.name for f in text_string_to_metric_families(live_scrape)}
    samples = {s.name for f in text_string_to_metric_families(live_scrape) for s in f.samples}
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/zooserve.json").read_text())
    used = {n for e in check_dashboard.exprs(dashboard) for n in re.findall(r"\bzooserve_[a-z0-9_]+", e)}

    def base(name: str) -> str:
        return next((name[:-len(s)] for s in check_dashboard.SUFFIXES if name.endswith(s)), name)

    missing = {n for n in used if base(n) not in check_dashboard.FUTURE and n not in samples and n not in families}
    assert used and not missing, f"queried by the dashboard but not exported: {sorted(missing)}"
