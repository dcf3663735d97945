"""benchmarks/tokenize_bench.py --dry-run runs end to end (both tokenizers, /classify in process, 3 repeats),
prints its table and saves it (--save); the figures themselves are not checked (speed targets live in the
script, not in tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = "tweets-transformer-int8"


@pytest.mark.skipif(importlib.util.find_spec("tokenizers") is None, reason="`tokenizers` (the old column) is not "
                    "installed")
@pytest.mark.skipif(not list((ROOT / "models" / MODEL).glob("*/model.json")), reason=f"models/{MODEL} is absent")
def test_tokenize_bench_dry_run_prints_and_saves_its_table(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("tokenize_bench", ROOT / "benchmarks" / "tokenize_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--dry-run", "--model", MODEL, "--save", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line.split("|") for line in out.splitlines() if line.startswith(("| encode", "| /classify"))]
    assert [r[1].split(",")[0].strip() for r in rows] == ["encode 1 tweet"] * 2 + ["encode 64 tweets"] * 2 + [
        "/classify 1 tweet", "/classify 64 tweets"]
    assert all(float(r[2].replace(",", "")) > 0 and float(r[3].replace(",", "")) > 0 for r in rows)
    (saved,) = tmp_path.glob(f"*-tokenize_bench-{MODEL}-dry-run.md")
    assert saved.read_text().endswith(out.strip() + "\n")  # the report as printed
