"""The image-quality table of docs/generative.md, measured now from the shipped ONNX files (no torch).

    python -m training.gen_report                                   # print the table
    python -m training.gen_report --write docs/generative.md --cards  # and record it in the docs and cards
    python -m training.gen_report --dry-run                         # 500 images: a smoke test

For every generator in the repository (a card with a latent prior: GANs, VAEs) it draws `--images` codes
from `--seed` (zooserve.latent: the rule /sample follows, so the same seed gives the same images through the
server), turns the outputs into uint8 pixels as /sample does, and measures them against the 10,000 test
images with `fashion-resnet`'s features (training.image_quality: a Frechet distance and class coverage).
Reference rows make the numbers mean something: 10,000 training images (real images that are not the test
set), the test images themselves (coverage only), and every autoencoder's reconstructions of the test images.
`--cards` writes each generator's row into its card as the split "generated".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


from training.data import fashion_mnist
from training.export import isa_check
from training.generated import Generated
from training.image_quality import FeatureModel, Quality, gaussian, measure
from training.report import splice
from zooserve.card import (CARD_FILE, SHIPPED_REPOSITORIES, ModelCard, find_cards, load_card, model_folder,
                          save_card)

BEGIN, END = "<!-- image-quality:begin -->", "<!-- image-quality:end -->"
ROOT = Path(__file__).resolve().parents[1]
GENERATED = "generated"  # the split name of the figures in a generator's card
TARGETS = "every class 5-20%, mean top-1 >= 0.80"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=os.pathsep.join(str(ROOT / r) for r in SHIPPED_REPOSITORIES.split(os.pathsep)),
                   help="model repository: a folder, or several joined by ':' (default: models:models-extra)")
    p.add_argument("--features", default="fashion-resnet", help="the classifier whose features measure images")
    p.add_argument("--images", type=int, default=10_000, help="generated images per model")
    p.add_argument("--seed", type=int, default=0, help="the seed the images are drawn from")
    p.add_argument("--data", help="folder with the Fashion-MNIST idx files")
    p.add_argument("--write", type=Path, help=f"replace the text between {BEGIN} and {END} in this file")
    p.add_argument("--cards", action="store_true", help="record each generator's figures in its card")
    p.add_argument("--dry-run", action="store_true", help="500 images, 2,000 references; writes nothing")
    args = p.parse_args(argv)
    if args.dry_run:
        args.images, args.write, args.cards = 500, None, False
    return args


def newest(models, name: str) -> Path:
    folder = model_folder(models, name)
    if folder is None:
        raise SystemExit(f"no model {name!r} in {models}")
    return max((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def row(what: str, q: Quality, labels: list[str]) -> str:
    shares = " / ".join(f"{q.class_shares[label] * 100:.1f}" for label in labels)
    low, high = min(q.class_shares.values()), max(q.class_shares.values())
    return (f"| {what} | {q.images:,} | {q.frechet_distance:.4f} | {low * 100:.1f}-{high * 100:.1f}% | {shares} "
            f"| {q.mean_top1_probability:.3f} | {'yes' if q.meets_targets() else 'no'} |")


def record(card_dir: Path, q: Quality, feature_model: str) -> ModelCard:
    """Replace the card's "generated" figures with `q` (the ONNX files and their checksums are unchanged)."""
    data = json.loads((card_dir / CARD_FILE).read_text())
    figures = {"split": GENERATED, "examples": q.images, "measured_on": isa_check.measured_on(),
               "frechet_distance": q.frechet_distance, "feature_model": feature_model,
               "class_shares": q.class_shares, "mean_top1_probability": q.mean_top1_probability}
    data["metrics"] = [m for m in data["metrics"] if m["split"] != GENERATED] + [figures]
    card = ModelCard.model_validate(data)
    save_card(card_dir, card)
    return card


def table(args: argparse.Namespace) -> tuple[str, list[tuple[Path, Quality]]]:
    data = fashion_mnist.load(args.data, allow_download=False)
    refs = 2_000 if args.dry_run else 10_000
    feats = FeatureModel.open(newest(args.models, args.features))
    test_feats, test_probs = feats.run(data.test_images[:refs])
    reference = gaussian(test_feats)
    labels = feats.card.labels
    lines = [f"| images | count | Frechet distance to the test images ({feats.name} features) | class shares "
             f"(min-max) | shares per class, % ({', '.join(labels)}) | mean top-1 probability | {TARGETS} |",
             "|---|---:|---:|---:|---|---:|:---:|"]
    lines.append(row("Fashion-MNIST training images (real, not the test set)",
                     measure(feats, data.train_images[:refs], reference), labels))
    lines.append(row("Fashion-MNIST test images (the reference; distance 0 by definition)",
                     measure(feats, data.test_images[:refs], reference), labels))
    measured = []
    for card_path in find_cards(args.models):
        card = load_card(card_path)
        if card.latent is None:
            continue
        model = Generated(card_path.parent)
        if card.task == "autoencoder":
            recon = model.reconstruct(data.test_images[:refs])
            lines.append(row(f"{model.name}: reconstructions of the test images", measure(feats, recon, reference),
                             labels))
        if model.samples:
            q = measure(feats, model.sample(args.images, args.seed), reference)
            lines.append(row(f"**{model.name}: samples** (seed {args.seed})", q, labels))
            measured.append((card_path.parent, q))
    return "\n".join(lines), measured


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.write:  # check the markers now, not after the measuring
        splice(args.write.read_text(), "", args.write, BEGIN, END)
    block, measured = table(args)
    if args.write:
        args.write.write_text(splice(args.write.read_text(), block, args.write, BEGIN, END))
    if args.cards:
        feature_model = f"{args.features}/{newest(args.models, args.features).name}"
        for card_dir, q in measured:
            record(card_dir, q, feature_model)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
