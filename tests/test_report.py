"""zooserve report on a real (tiny) model repository built by the training pipeline's own --dry-run."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from training import report, train
from training.data.idx import write_idx

README_HEAD = "# zooserve\n\nIntro text.\n\n## Results\n\n"
README_TAIL = "\n\n## Licence\n\nApache-2.0\n"
FLOAT, INT8 = "fashion-lenet", "fashion-lenet-int8"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """models/ with fashion-lenet and fashion-lenet-int8, and runs/ with the float model's checkpoint."""
    torch.set_num_threads(1)  # the machine is shared with real training runs
    root = tmp_path_factory.mktemp("zoo")
    data, out, runs = root / "data", root / "models", root / "runs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 700), ("t10k", 100)):
        write_idx(data / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(data / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8))
    assert train.main(["--recipe", "fashion-lenet", "--dry-run", "--data", str(data), "--out", str(out),
                       "--runs", str(runs), "--no-progress", "--int8"]) == 0
    return out, runs / "dry-run"  # a dry run keeps its checkpoint apart from real runs


def table_rows(text: str) -> dict[str, list[str]]:
    """Model name -> its cells, for the body rows of the Markdown table."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| ---")]
    assert rows[0][:3] == ["Model", "Family", "Test acc."]
    return {cells[0]: dict(zip(rows[0], cells)) for cells in rows[1:]}


def run_report(repo, tmp_path, *extra):
    models, runs = repo
    readme = tmp_path / "README.md"
    readme.write_text(README_HEAD + report.BEGIN + "\nold results\n" + report.END + README_TAIL)
    code = report.main(["--dry-run", "--models", str(models), "--runs", str(runs), "--readme", str(readme), *extra])
    torch.set_num_threads(1)
    return code, readme.read_text()


def test_table_rows_and_readme(repo, tmp_path, capsys):
    code, text = run_report(repo, tmp_path, "--output", str(tmp_path / "results.md"))
    assert code == 0
    printed = capsys.readouterr().out
    rows = table_rows(printed)
    assert sorted(rows) == [FLOAT, INT8]
    number = re.compile(r"^\d+\.\d+$")
    for name in (FLOAT, INT8):
        cells = rows[name]
        assert cells["Family"] == "cnn/lenet"
        assert re.fullmatch(r"\d+\.\d\d%", cells["Test acc."])
        assert cells["Params"] == "61,706"  # LeNet-5 for 10 classes; the INT8 card keeps its source's count
        assert re.fullmatch(r"\d+\.\d+ (KB|MB)", cells["ONNX size"])
        assert cells["Train time"].endswith(" min")
        assert number.match(cells["ORT b1 (ms)"]) and number.match(cells["ORT b32 (ms)"])
    for col in ("PyTorch b1 (ms)", "PyTorch b32 (ms)"):
        assert number.match(rows[FLOAT][col])
        assert rows[INT8][col] == "n/a"
    assert re.fullmatch(r"\d+\.\d\dx", rows[FLOAT]["Speed-up b1"])
    assert rows[INT8]["Speed-up b32"] == "n/a"
    assert "Threads: 1" in printed and f"torch {torch.__version__}" in printed
    assert "the checkpoint's weights do not reproduce" not in printed  # best_model is what was exported

    # Outside the markers nothing moved; inside is exactly what was printed (and written to --output).
    assert text.startswith(README_HEAD + report.BEGIN + "\n") and text.endswith(report.END + README_TAIL)
    inside = text[len(README_HEAD + report.BEGIN):-len(report.END + README_TAIL)]
    assert "old results" not in inside and inside.strip() == printed.strip()
    assert (tmp_path / "results.md").read_text().strip() == printed.strip()


def test_missing_checkpoint_times_fresh_weights_with_a_footnote(repo, tmp_path, capsys):
    """A fresh clone has no runs/: PyTorch is timed on the card's architecture at fresh weights, and says so."""
    code, _ = run_report(repo, tmp_path, "--runs", str(tmp_path / "no-runs"))  # later --runs wins
    assert code == 0
    printed = capsys.readouterr().out
    rows = table_rows(printed)
    assert re.match(r"^\d+\.\d+$", rows[FLOAT]["ORT b1 (ms)"])
    assert re.match(r"^\d+\.\d+$", rows[FLOAT]["PyTorch b1 (ms)"]) and rows[FLOAT]["Speed-up b32"].endswith("x")
    assert f"{FLOAT}: PyTorch timed at freshly initialised weights" in printed and "no checkpoint" in printed


def test_model_option_keeps_only_the_named_models(repo, tmp_path, capsys):
    code, _ = run_report(repo, tmp_path, "--model", INT8)
    assert code == 0
    assert sorted(table_rows(capsys.readouterr().out)) == [INT8]


@pytest.mark.parametrize("content", ["# no markers here\n", f"{report.END}\n{report.BEGIN}\n"])
def test_readme_without_markers_is_a_clear_error(repo, tmp_path, capsys, content):
    readme = tmp_path / "README.md"
    readme.write_text(content)
    models, runs = repo
    assert report.main(["--dry-run", "--models", str(models), "--runs", str(runs), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert "needs the markers" in err and report.BEGIN in err and report.END in err
    assert readme.read_text() == content  # untouched


def test_splice_keeps_surroundings():
    text = f"a\n{report.BEGIN}\nold\n{report.END}\nb\n"
    assert report.splice(text, "NEW", "x") == f"a\n{report.BEGIN}\nNEW\n{report.END}\nb\n"
