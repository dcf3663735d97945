"""benchmarks/gen_bench.py --dry-run runs end to end (a real server on 127.0.0.1, tiny counts), prints
its table and saves it (--save); the figures themselves are not checked here (speed targets live in the
script, not in tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
