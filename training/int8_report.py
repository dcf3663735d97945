"""The INT8 results table of docs/int8.md, from the shipped cards alone (nothing is measured again here).

    python -m training.int8_report                       # print the table
    python -m training.int8_report --write docs/int8.md  # replace the table between the markers

Each INT8 card records its test figure on the CPU it was made on (`metrics[].measured_on`), the same split
run on an emulated AVX2-only CPU (`quantization.isa_checks`) and its float source; the table puts them side
by side with the two files' sizes. `zooserve quantize --emulate avx2` remakes a card.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from zooserve.card import SHIPPED_REPOSITORIES, ModelCard, find_cards, load_card, model_folder
from training.report import size, splice

BEGIN, END = "<!-- int8-results:begin -->", "<!-- int8-results:end -->"
ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=os.pathsep.join(str(ROOT / r) for r in SHIPPED_REPOSITORIES.split(os.pathsep)),
                   help="model repository: a folder, or several joined by ':' (default: models:models-extra)")
    p.add_argument("--write", type=Path, help=f"replace the text between {BEGIN} and {END} in this file")
    return p.parse_args(argv)


def _figure(card: ModelCard, split) -> str:
    """Accuracy (4 places) for a classifier, nats per token (5 places) for a language model."""
    return f"{split.cross_entropy:.5f}" if card.task == "language-model" else f"{split.accuracy:.4f}"


def row(card_path: Path, models) -> str:
    card = load_card(card_path)
    source_dir = model_folder(models, card.quantization.source_model)
    source = load_card(source_dir / "model.json")
    test, float_test = card.split(), source.split()
    checks = {c.measured_on.isa: c for c in card.quantization.isa_checks}
    avx2 = checks.get("avx2")
    lm = card.task == "language-model"
    change = test.cross_entropy - float_test.cross_entropy if lm else test.accuracy - float_test.accuracy
    return " | ".join([
        f"| {card.name} v{card.version}", _figure(source, float_test),
        f"{_figure(card, test)} ({test.measured_on.isa})" if test.measured_on else _figure(card, test),
        _figure(card, avx2) if avx2 else "not run",
        f"{change:+.5f}" if lm else f"{change:+.4f}",
        f"{avx2.max_abs_diff:.2g}" if avx2 else "-",
        f"{size(source.artifact.bytes)} -> {size(card.artifact.bytes)} |",
    ])


def table(models) -> str:
    quantized = [p for p in find_cards(models) if load_card(p).quantization is not None]
    lines = ["| model | float | INT8 (CPU level of the card's run) | INT8 on avx2 (emulated) | INT8 - float "
             "| max \\|diff\\| avx2 vs card | size float -> INT8 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    return "\n".join(lines + [row(p, models) for p in quantized])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    block = table(args.models)
    if args.write:
        args.write.write_text(splice(args.write.read_text(), block, args.write, BEGIN, END))
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
