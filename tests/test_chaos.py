"""benchmarks/chaos.py --dry-run, on the fuzz, poison and reload scenarios against real servers serving
models/: the figures of the table it prints meet the targets it states (no 5xx in fuzz, no good request
failed in poison, a failed reload kept the model serving)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from zooserve import cpu

ROOT = Path(__file__).resolve().parents[1]
GROUP = re.compile(r"^(?P<label>.*?)\s*(?P<counts>(?:\d{3}|none): \d+(?:, (?:\d{3}|none): \d+)*)$")


@pytest.fixture(scope="module")
def run():
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "chaos.py"), "--dry-run", "--scenario", "fuzz",
                           "--scenario", "poison", "--scenario", "reload"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def rows(run) -> dict[str, list[dict[str, str]]]:
    """The table's rows by scenario, each a dict column -> cell."""
    lines = [line for line in run.stdout.splitlines() if line.startswith("| ")]
    assert lines, run.stdout + run.stderr
    header = [c.strip() for c in lines[0].strip("| ").split(" | ")]
    out: dict[str, list[dict[str, str]]] = {}
    for line in lines[1:]:
        row = dict(zip(header, (c.strip() for c in line.strip("| ").split(" | "))))
        out.setdefault(row["scenario"], []).append(row)
    return out


def codes(cell: str) -> dict[str, Counter]:
    """'good 200: 180; bad 400: 20' -> {"good": {200: 180}, "bad": {400: 20}} ("none": no answer is 0)."""
    out = {}
    for group in cell.split("; "):
        m = GROUP.match(group)
        assert m, cell
        out[m["label"]] = Counter({0 if s == "none" else int(s): int(n)
                                   for s, n in (c.split(": ") for c in m["counts"].split(", "))})
    return out


def checks(cell: str) -> dict[str, tuple[str, str]]:
    """'good not 200: 0 (= 0) ok; ...' -> {"good not 200": ("0", "ok"), ...}."""
    out = {}
    for check in cell.split("; "):
        name, rest = check.split(": ", 1)
        out[name] = (rest.split(" (")[0], rest.rsplit(" ", 1)[1])
    return out


def test_it_runs_and_names_the_cpu(run):
    assert run.returncode in (0, 1) and "Traceback" not in run.stderr, run.stderr
    assert f"CPU: {cpu.cpu_name()}" in run.stdout


def test_fuzz_answers_no_5xx_and_the_server_serves_on(rows):
    fuzz = rows["fuzz"]
    assert {r["case"].split(" (")[0] for r in fuzz} == {"hand-made", "random"}
    assert sum(int(r["requests"]) for r in fuzz) >= 200  # a few hundred
    for r in fuzz:
        statuses = codes(r["status codes"])[""]
        assert not [s for s in statuses if s >= 500 or s == 0], r
        got = checks(r["checks"])
        assert got["5xx or no answer"] == ("0", "ok") and got["ready and serving after"] == ("yes", "ok"), r


def test_poison_fails_no_good_request_and_refuses_every_bad_one(rows):
    (row,) = rows["poison"]
    got = codes(row["status codes"])
    assert set(got["good"]) == {200} and set(got["bad"]) == {400}
    assert got["good"][200] == 9 * got["bad"][400]  # one bad in ten
    assert all(verdict == "ok" for _, verdict in checks(row["checks"]).values()), row


def test_a_failed_reload_keeps_the_model_serving(rows):
    (row,) = rows["reload"]
    got = codes(row["status codes"])
    assert set(got["good"]) == {200} and got["good"][200] > 0
    assert min(got["load truncated"]) >= 500
    assert set(got["unload without key"]) <= {401, 403} and set(got["unload with a wrong key"]) <= {401, 403}
    assert set(got["load restored"]) == {200}
    assert all(verdict == "ok" for _, verdict in checks(row["checks"]).values()), row
