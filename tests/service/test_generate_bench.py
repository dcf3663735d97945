"""benchmarks/gen_bench.py --dry-run runs end to end (a real server on 127.0.0.1, tiny counts), prints
its table and saves it (--save); the figures themselves are not checked here (speed targets live in the
script, not in tests)."""

from __future__ import annotations

import importlib.util
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
