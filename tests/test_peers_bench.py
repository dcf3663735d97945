"""benchmarks/peers: a real dry run of zooserve and the bare endpoint (`--peers none`: no peer venv, no
network), the process-tree CPU accounting on processes whose CPU use is known, and the peers check."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks.peers import proc_cpu, report

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("fashion-lenet", "fashion-resnet")


def table(text: str, first_column: str) -> list[dict[str, str]]:
    """The Markdown table whose header starts with `first_column`, as dicts column -> cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_column} |"))
    header = [c.strip() for c in lines[start].strip("| ").split(" | ")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("| "):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("| ").split(" | ")))))
    return rows


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("peers")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peers"), "--dry-run", "--peers", "none",
                           "--venvs", str(tmp / "venvs"), "--save", str(tmp / "saved")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    return done, tmp


def test_dry_run_measures_zooserve_and_bare_without_errors(dry_run):
    done, tmp = dry_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp / "venvs").exists()  # --peers none installs nothing
    rows = table(done.stdout, "target | model")
    assert sorted((r["target"], r["model"], r["connections"]) for r in rows) == sorted(
        (t, m, c) for t in ("bare", "zooserve") for m in MODELS for c in ("1", "8"))
    for r in rows:
        assert r["errors"] == "0" and float(r["req/s"]) > 0, r
        assert float(r["p99 ms"]) >= float(r["p50 ms"]) > 0, r
        assert float(r["server CPU (cores)"]) >= 0 and r["server processes"] == "1", r
    assert "## Check" not in done.stdout  # no peer, nothing to be ahead of


def test_ratios_are_computed_from_the_rows(dry_run):
    done, _ = dry_run
    rps = {(r["target"], r["model"], r["connections"]): float(r["req/s"]) for r in table(done.stdout, "target | model")}
    ratios = table(done.stdout, "model | connections | zooserve req/s")
    assert len(ratios) == 4
    for r in ratios:
        zoo, bare = rps[("zooserve", r["model"], r["connections"])], rps[("bare", r["model"], r["connections"])]
        assert float(r["zooserve req/s"]) == zoo
        # The table rounds req/s to units and ratios to hundredths.
        assert float(r["vs bare"]) == pytest.approx(zoo / bare, abs=0.006)
        assert r["vs mlserver"] == r["vs litserve"] == "-"


def test_save_writes_the_report_under_its_header(dry_run):
    done, tmp = dry_run
    saved = list((tmp / "saved").glob("*-peers-fashion-lenet-fashion-resnet-dry-run.md"))
    assert len(saved) == 1, list((tmp / "saved").iterdir())
    text = saved[0].read_text()
    assert "benchmarks/peers --dry-run --peers none" in text
    assert done.stdout.strip() in text


def test_tree_cpu_counts_a_child_that_ended_inside_the_window():
    # The root waits for "go", then runs a child that burns 0.4 s of CPU and reaps it, then waits to be closed.
    code = textwrap.dedent("""
        import subprocess, sys
        print("ready", flush=True); sys.stdin.readline()
        subprocess.run([sys.executable, "-c", "import time\\nwhile time.process_time() < 0.4: pass"], check=True)
        print("done", flush=True); sys.stdin.readline()
    """)
    root = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert root.stdout.readline() == "ready\n"
        before, n = proc_cpu.tree_cpu_seconds(root.pid)
        assert n == 1
        root.stdin.write("go\n")
        root.stdin.flush()
        assert root.stdout.readline() == "done\n"
        after, n = proc_cpu.tree_cpu_seconds(root.pid)
        # 0.4 s burnt by the child (10 ms clock ticks), plus its interpreter's start-up.
        assert 0.38 <= after - before <= 1.5 and n == 1
    finally:
        root.stdin.close()
        root.wait(10)


def test_tree_lists_live_descendants():
    root = subprocess.Popen(["sh", "-c", "sleep 30 & sh -c 'sleep 30' & wait"])
    try:
        for _ in range(200):
            pids = proc_cpu.tree(root.pid)
            if len(pids) == 4:  # sh, sleep, sh, its sleep
                break
            subprocess.run(["sleep", "0.01"])
        assert pids[0] == root.pid and len(pids) == 4
    finally:
        for pid in reversed(proc_cpu.tree(root.pid)):
            subprocess.run(["kill", str(pid)])
        root.wait(10)


def row(target: str, rps: float, errors: int = 0, model: str = "m", c: int = 16) -> report.PeerRow:
    return report.PeerRow(target, model, "json", c, int(rps), errors, 1.0, [1.0])


def test_check_wants_zooserve_ahead_of_the_best_peer_without_errors():
    rows = [row("mlserver", 700), row("litserve", 400), row("zooserve", 900),
            row("mlserver", 700, c=64), row("litserve", 800, c=64), row("zooserve", 750, c=64),
            row("mlserver", 100, c=1), row("zooserve", 500, errors=1, c=1)]
    assert sorted(report.checks(rows)) == [("m", 1, 500.0, "mlserver", 100.0, False),
                                           ("m", 16, 900.0, "mlserver", 700.0, True),
                                           ("m", 64, 750.0, "litserve", 800.0, False)]
    assert report.ratios(rows)[("m", 64)] == {"mlserver": 750 / 700, "litserve": 750 / 800}
