"""docs/int8.md's table comes from the shipped cards: one row per INT8 model, with the card's own figures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zooserve.card import SHIPPED_REPOSITORIES, find_cards, load_card
from training import int8_report

ROOT = Path(__file__).resolve().parents[1]
MODELS = os.pathsep.join(str(ROOT / r) for r in SHIPPED_REPOSITORIES.split(os.pathsep))
QUANTIZED = [load_card(p) for p in find_cards(MODELS) if load_card(p).quantization is not None]


@pytest.mark.skipif(not QUANTIZED, reason="no INT8 models shipped")
def test_table_has_each_int8_card_with_its_figures():
    rows = int8_report.table(MODELS).splitlines()[2:]
    assert len(rows) == len(QUANTIZED)
    for card in QUANTIZED:
        line = next(r for r in rows if r.startswith(f"| {card.name} v{card.version} |"))
        test = next(m for m in card.metrics if m.split == "test")
        figure = f"{test.cross_entropy:.5f}" if card.task == "language-model" else f"{test.accuracy:.4f}"
        assert f"| {figure} ({test.measured_on.isa}) |" in line


def test_write_replaces_only_the_marked_table(tmp_path):
    doc = tmp_path / "int8.md"
    doc.write_text(f"intro\n{int8_report.BEGIN}\nold\n{int8_report.END}\nrest\n")
    assert int8_report.main(["--models", MODELS, "--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith(f"intro\n{int8_report.BEGIN}\n| model |") and text.endswith(f"{int8_report.END}\nrest\n")
    assert "old" not in text


def test_write_needs_the_markers(tmp_path):
    doc = tmp_path / "int8.md"
    doc.write_text("no markers here\n")
    with pytest.raises(ValueError, match="needs the markers"):
        int8_report.main(["--models", MODELS, "--write", str(doc)])
