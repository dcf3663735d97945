"""benchmarks/gen_step_cost.py --dry-run runs end to end (the served language model's stepper and scheduler in
this process, tiny counts) and prints its table with every figure measured; the figures themselves are not
checked here (speed lives in the script, not in tests)."""

from __future__ import annotations

from benchmarks import gen_step_cost


def test_gen_step_cost_dry_run_prints_its_table(capsys):
    assert gen_step_cost.main(["--dry-run", "--model", "island-lstm"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| island-lstm |")]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "2"]  # streams
    assert all(float(cell.replace(",", "")) > 0 for r in rows for cell in r.split("|")[3:6])
