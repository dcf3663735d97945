"""Check a Grafana dashboard: valid JSON, and every zooserve_* metric its PromQL uses is declared in
service/metrics.py (tests/service/test_live_metrics.py checks that each one has samples in a live scrape).

    python deploy/check_dashboard.py [deploy/grafana/dashboards/zooserve.json]

Reads service/metrics.py as text (no imports), so it runs without the service's dependencies.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Series prometheus-client derives from a declared counter or histogram.
SUFFIXES = ("_bucket", "_sum", "_count", "_created")


def declared_metrics(metrics_py: Path = ROOT / "service" / "metrics.py") -> set[str]:
    return set(re.findall(r"""["'](zooserve_[a-z0-9_]+)["']""", metrics_py.read_text()))


def exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard.get("panels", []) for t in p.get("targets", []) if t.get("expr")]


def unknown_metrics(dashboard: dict, known: set[str]) -> set[str]:
    bad = set()
    for name in (n for e in exprs(dashboard) for n in re.findall(r"\bzooserve_[a-z0-9_]+", e)):
        base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)
        if name not in known and base not in known:
            bad.add(name)
    return bad


def main(argv: list[str] | None = None) -> int:
    path = Path((argv or sys.argv[1:] or [ROOT / "deploy/grafana/dashboards/zooserve.json"])[0])
    try:
        dashboard = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        print(f"{path}: not valid JSON: {e}", file=sys.stderr)
        return 1
    if not exprs(dashboard):
        print(f"{path}: no PromQL expressions found", file=sys.stderr)
        return 1
    bad = unknown_metrics(dashboard, declared_metrics())
    if bad:
        print(f"{path}: metrics not in service/metrics.py: {', '.join(sorted(bad))}", file=sys.stderr)
        return 1
    print(f"{path}: {len(exprs(dashboard))} queries, every metric known")
    return 0


if __name__ == "__main__":
    sys.exit(main())
