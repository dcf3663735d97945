"""benchmarks/serve_bench.py --dry-run: every target (raw ORT, both bare endpoints, zooserve over JSON and
binary) runs and agrees with onnxruntime in-process, and --save writes the printed report. Speed is never
asserted here: the script prints it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not (ROOT / "models" / "fashion-lenet").is_dir(), reason="the shipped models are not here")
def test_serve_bench_dry_run_measures_every_target(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serve_bench.py"), "--dry-run", "--model",
                           "fashion-lenet", "--concurrency", "1,4", "--requests", "20", "--idle-requests", "5",
                           "--json", str(out), "--save", str(tmp_path / "results"), "--description", "smoke test"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {(r["target"], r["encoding"]) for r in rows} >= {
        ("raw-ort", "-"), ("bare", "json"), ("bare", "binary"), ("bare-asgi", "json"), ("zooserve", "json"),
        ("zooserve", "binary")}
    zoo = [r for r in rows if r["target"] == "zooserve" and r["workers"] == 1]
    assert all(r["errors"] == 0 and r["requests"] > 0 and r["vs_bare"] and r["ort_batch_rows_s"] for r in zoo)
    assert all(r["vs_ceiling"] == pytest.approx(r["rps"] / r["ceiling"]) for r in zoo)
    (two,) = [r for r in rows if r["workers"] == 2]  # --workers 2 by default: LeNet JSON at the top level
    assert two["errors"] == 0 and two["requests"] > 0 and two["concurrency"] == 4
    # Each zooserve window also has its server's CPU (the process tree, /proc) and its batchers' mean batch.
    assert all(r["server_cpu_s"] is not None and r["server_cpu_s"] >= 0 and r["formed_batch"] >= 1
               for r in zoo + [two])
    # Every request reached the counters of one worker or the other, and /metrics adds them up.
    assert "| /metrics across the workers" in proc.stdout and proc.stdout.split("| /metrics across")[1].split("\n")[0].endswith("| ok |")
    assert "| target |" in proc.stdout and "cold start" in proc.stdout
    (saved,) = (tmp_path / "results").glob("*-serve_bench-smoke-test.md")
    assert "--description 'smoke test'`" in saved.read_text()
    assert saved.read_text().endswith(proc.stdout)  # the report as printed
