"""benchmarks/record.py: a benchmark run saved as a dated file, with the command, date, commit and hardware,
never overwriting an earlier run. (The benchmark scripts' own --save runs in tests/service/test_*_bench.py.)"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pytest

from benchmarks import record
from zooserve import cpu

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
REPORT = "| model | req/s |\n|---|---:|\n| fashion-lenet | 123 |\n"


def saved(folder, argv=("--dry-run", "--model", "fashion lenet"), description="fashion-lenet dry-run"):
    return record.save(REPORT, script=str(record.ROOT / "benchmarks" / "serve_bench.py"), argv=list(argv),
                       description=description, folder=folder, now=NOW)


def test_the_file_is_named_by_date_script_and_description(tmp_path):
    path = saved(tmp_path)
    assert path == tmp_path / "2026-01-02-serve_bench-fashion-lenet-dry-run.md"


def test_the_file_holds_command_date_commit_hardware_and_the_report(tmp_path):
    title, head, report = saved(tmp_path).read_text().split("\n\n", 2)
    assert title == "# serve_bench: fashion-lenet dry-run, 2026-01-02"
    fields = dict(line.removeprefix("- ").split(": ", 1) for line in head.splitlines())
    assert fields["command"].endswith(" benchmarks/serve_bench.py --dry-run --model 'fashion lenet'`")
    assert fields["date"] == "2026-01-02 03:04:05 UTC"
    assert re.fullmatch(r"[0-9a-f]{7,40}( with uncommitted changes)?|unknown \(not a git checkout\)", fields["commit"])
    hw = fields["hardware"]
    assert hw.startswith(cpu.cpu_name()) and f"onnxruntime {metadata.version('onnxruntime')}" in hw
    assert hw.endswith(f"ISA level {cpu.isa_level()}")
    assert report == REPORT


def test_a_second_run_of_the_day_never_overwrites_the_first(tmp_path):
    first = saved(tmp_path)
    second, third = saved(tmp_path, argv=["--requests", "10"]), saved(tmp_path)
    assert [p.name for p in (second, third)] == ["2026-01-02-serve_bench-fashion-lenet-dry-run-2.md",
                                                 "2026-01-02-serve_bench-fashion-lenet-dry-run-3.md"]
    assert "--requests 10" not in first.read_text() and "--requests 10" in second.read_text()


@pytest.mark.parametrize("text,expected", [("fashion-lenet, c=64 (JSON)", "fashion-lenet-c-64-json"),
                                           ("island-lstm island-lstm-int8", "island-lstm-island-lstm-int8"),
                                           ("ORT 1.32.0", "ort-1.32.0"), ("!!!", "run")])
def test_slug(text, expected):
    assert record.slug(text) == expected


def test_save_run_only_when_asked_and_names_what_was_measured(tmp_path, capsys):
    p = argparse.ArgumentParser()
    record.add_arguments(p)
    p.add_argument("--dry-run", action="store_true")
    record.save_run(p.parse_args([]), REPORT, script="gen_bench.py", argv=[], models=["island-lstm"])
    assert not any(tmp_path.iterdir())
    args = p.parse_args(["--save", str(tmp_path), "--dry-run"])
    record.save_run(args, REPORT, script="gen_bench.py", argv=[], models=["island-lstm", "island-lstm-int8"])
    (path,) = tmp_path.iterdir()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d-gen_bench-island-lstm-island-lstm-int8-dry-run\.md", path.name)
    assert f"saved {path}" in capsys.readouterr().err
    assert p.parse_args(["--save"]).save == record.RESULTS == record.ROOT / "benchmarks" / "results"


def test_the_command_line_is_relative_to_the_checkout_when_inside_it(monkeypatch):
    monkeypatch.setattr(sys, "executable", str(record.ROOT / ".venv" / "bin" / "python"))
    assert record.command_line(str(record.ROOT / "benchmarks" / "gen_bench.py"), ["--streams", "1,8"]) == \
        ".venv/bin/python benchmarks/gen_bench.py --streams 1,8"
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")
    assert record.command_line("/elsewhere/bench.py", []) == "/usr/bin/python3 /elsewhere/bench.py"


def test_memory_bench_dry_run_measures_a_real_server(tmp_path):
    """One launch of the default repository: ready time and RSS read from the server's own /proc entry."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "memory_bench.py"), "--dry-run", "--save",
                           str(tmp_path)], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rss_line = next(line for line in proc.stdout.splitlines() if line.startswith("| RSS 1 s after ready"))
    rss = float(rss_line.split("|")[2].split()[0])
    assert 50 < rss < 2000  # a Python server with onnxruntime and the default models: tens to hundreds of MB
    (saved,) = tmp_path.glob("*-memory_bench-*.md")
    assert saved.read_text().endswith(proc.stdout)
