"""benchmarks/gen_step_cost.py --dry-run runs end to end (the served language model's stepper and scheduler in
this process, tiny counts) and prints its table with every figure measured; the figures themselves are not
checked here (speed lives in the script, not in tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gen_step_cost_dry_run_prints_its_table(capsys):
    spec = importlib.util.spec_from_file_location("gen_step_cost", ROOT / "benchmarks" / "gen_step_cost.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--dry-run", "--model", "island-lstm"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| island-lstm |")]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "2"]  # streams
    assert all(float(cell.replace(",", "")) > 0 for r in rows for cell in r.split("|")[3:6])
