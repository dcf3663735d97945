"""The package boundaries, read from the source (every import statement, also inside functions):
training and service share only the contract package `zooserve`; service never imports torch, and neither
imports Hugging Face `tokenizers` (not in the serving install: zooserve.wordpiece reads tokenizer.json)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "zooserve" / "cli.py"  # the `zooserve` command dispatches to both sides, lazily


def imported(path: Path) -> set[str]:
    """Top-level package names and full module names that `path` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names | {n.split(".")[0] for n in names}


def sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if p != CLI)


@pytest.mark.parametrize("package, forbidden", [
    ("training", {"service"}), ("service", {"training", "torch", "tokenizers"}),
    ("zooserve", {"service", "training", "torch", "onnxruntime", "tokenizers"})])
def test_packages_import_only_across_the_contract(package, forbidden):
    found = {str(p.relative_to(ROOT)): sorted(imported(p) & forbidden) for p in sources(package)}
    assert sources(package) and not {k: v for k, v in found.items() if v}
