"""zooserve text-report on a tiny text-classifier repository made by train_transformer's own --dry-run."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_transformer import write_csv
from training import text_report, train_transformer


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-zoo")
    data = write_csv(root / "tiny.csv", n=300)
    assert train_transformer.main(["--dry-run", "--data", str(data), "--text-column", "body", "--label-column",
                                   "label", "--runs", str(root), "--int8", "--no-progress", "--threads", "1",
                                   "--d-model", "32", "--ff-dim", "64", "--no-baseline"]) == 0
    return data, root / "dry-run" / "models", root / "dry-run"


def rows(text: str) -> dict[str, dict[str, str]]:
    lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
             if line.startswith("| ") and not line.startswith("| ---")]
    return {cells[0]: dict(zip(lines[0], cells)) for cells in lines[1:]}


def test_report_rows_for_model_int8_and_baseline(repo, tmp_path):
    data, models, runs = repo
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{text_report.BEGIN}\nold\n{text_report.END}\ntail\n")
    assert text_report.main(["--dry-run", "--data", str(data), "--text-column", "body", "--label-column", "label",
                             "--models", str(models), "--runs", str(runs), "--readme", str(readme)]) == 0
    torch.set_num_threads(1)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("tail\n") and "old" not in text
    table = rows(text)
    card = json.loads((models / "tweets-transformer" / "1" / "model.json").read_text())
    test = next(m for m in card["metrics"] if m["split"] == "test")
    fp32 = table["tweets-transformer"]
    assert fp32["Test acc."] == f"{test['accuracy']:.2%}" and fp32["Macro-F1"] == f"{test['macro_f1']:.4f}"
    assert fp32["Speed-up b1"].endswith("x") and float(fp32["PyTorch b32 (ms)"]) > 0  # the checkpoint was found
    assert table["tweets-transformer-int8"]["PyTorch b1 (ms)"] == "n/a"
    base = table["TF-IDF + logistic regression (baseline)"]
    assert base["Params"].endswith("features") and float(base["ORT b32 (ms)"]) > 0


def test_missing_markers_fail_before_timing(repo, tmp_path):
    data, models, runs = repo
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="needs the markers"):
        text_report.main(["--dry-run", "--data", str(data), "--models", str(models), "--readme", str(readme)])


def test_no_text_models_is_an_error(tmp_path, capsys):
    assert text_report.main(["--dry-run", "--models", str(tmp_path)]) == 1
    assert "no text-classification cards" in capsys.readouterr().err
