"""benchmarks/gen_bench.py --dry-run runs end to end (a real server on 127.0.0.1, tiny counts), prints
its table and saves it (--save); the figures themselves are not checked here (speed targets live in the
script, not in tests)."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_gen_bench_dry_run_prints_and_saves_its_table(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("gen_bench", ROOT / "benchmarks" / "gen_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--dry-run", "--model", "island-lstm", "--save", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| island-lstm |")]
    assert len(rows) == 2  # streams 1 and 2
    assert all(float(r.split("|")[4].replace(",", "")) > 0 for r in rows)  # zooserve tokens/s measured
    (saved,) = tmp_path.glob("*-gen_bench-island-lstm-dry-run.md")
    text = saved.read_text()
    assert f"benchmarks/gen_bench.py --dry-run --model island-lstm --save {tmp_path}`" in text
    assert text.endswith(out.strip() + "\n")  # the report as printed


def test_gen_ab_dry_run_compares_two_checkouts_burst_by_burst(capsys, tmp_path):
    """Against this very checkout (any directory with service/cli.py): both servers answer, every burst has
    its ratio, and the paired line is printed; a directory that is not a checkout is refused."""
    spec = importlib.util.spec_from_file_location("gen_ab", ROOT / "benchmarks" / "gen_ab.py")
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    assert ab.main(["--dry-run", "--model", "island-lstm", "--against", str(ROOT)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| this checkout |", "| --against |"))]
    assert len(rows) == 2 and all(len(r.split("|")[3].split(",")) == 2 for r in rows)  # 2 rounds each
    assert all(float(r.split("|")[2]) > 0 for r in rows)
    assert "the median of the rounds' paired ratios" in out
    with pytest.raises(SystemExit) as refused:
        ab.main(["--dry-run", "--against", str(tmp_path)])
    assert refused.value.code == 2
    assert "is not a zooserve checkout" in capsys.readouterr().err


def _gen_cpu():
    spec = importlib.util.spec_from_file_location("gen_cpu", ROOT / "benchmarks" / "gen_cpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gen_cpu_charges_each_thread_its_own_cpu_time():
    """A thread that spins for 0.3 s of CPU is charged that time under its own id; the main thread, which
    waits meanwhile, is not. (A thread's /proc entry goes when it ends, so the spinner waits to be read.)"""
    gen_cpu = _gen_cpu()
    spun, read = threading.Event(), threading.Event()

    def spin():
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass
        spun.set()
        read.wait()

    main = threading.main_thread().native_id
    before = gen_cpu.thread_cpu_seconds(os.getpid())
    spinner = threading.Thread(target=spin)
    spinner.start()
    spun.wait()
    after = gen_cpu.thread_cpu_seconds(os.getpid())
    read.set()
    spinner.join()
    assert 0.25 <= sum(after[spinner.native_id]) <= 0.6  # kernel ticks of 10 ms
    assert sum(after[main]) - sum(before[main]) < 0.2


def test_gen_cpu_dry_run_prints_and_saves_its_table(capsys, tmp_path):
    gen_cpu = _gen_cpu()
    assert gen_cpu.main(["--dry-run", "--model", "island-lstm", "--save", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith(("| part", "|---"))]
    assert [r.split("|")[1].strip() for r in rows] == list(gen_cpu.PARTS)
    assert all(float(r.split("|")[2]) >= 0 for r in rows)
    assert "Tokens in all: 32." in out  # 2 bursts x 2 streams x 8 tokens
    (saved,) = tmp_path.glob("*-gen_cpu-island-lstm-dry-run.md")
    assert saved.read_text().endswith(out.strip() + "\n")
