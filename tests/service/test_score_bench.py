"""benchmarks/score_bench.py --dry-run runs end to end (in process, a real server on 127.0.0.1, and the load
probe), prints its table and saves it (--save); the figures themselves are not checked here (speed targets
live in the script, not in tests)."""

from __future__ import annotations

from benchmarks import score_bench


def test_score_bench_dry_run_prints_and_saves_its_table(capsys, tmp_path):
    assert score_bench.main(["--dry-run", "--model", "island-ngram-word3", "--save", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("| island-ngram-word3 |")]
    cells = [c.strip().replace(",", "") for c in row.split("|")[1:-1]]
    assert int(cells[1]) > 0 and float(cells[3]) > 0 and float(cells[7]) > 0  # tokens, both tokens/s measured
    assert cells[5] in ("ok", "MISS") and cells[9] in ("ok", "MISS") and float(cells[11]) > 0  # RSS added
    (saved,) = tmp_path.glob("*-score_bench-island-ngram-word3-dry-run.md")
    text = saved.read_text()
    assert f"benchmarks/score_bench.py --dry-run --model island-ngram-word3 --save {tmp_path}`" in text
    assert text.endswith(out.strip() + "\n")  # the report as printed
