"""Make (or remake) the INT8 twin of a float model in the repository, without training it again.

    zooserve quantize models/fashion-lenet/1                       # -> models/fashion-lenet-int8/1
    zooserve quantize models/island-lstm/1 --corpus PATH --emulate avx2
    zooserve quantize models-extra/tweets-transformer/3 --out models --emulate avx2

The float card says how the model was trained; the data are prepared exactly as its training script did
(same split seed, same normalisation, same tokenizer), and the twin is made, measured and carded by the
same function as `--int8` at training time. The twin takes the float model's version number, replacing a
twin already there. `--emulate avx2` also runs the test split on an emulated AVX2-only CPU (minutes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zooserve.card import ModelCard, card_document, load_card
from training.data import corpus as corpus_lib
from training.export import isa_check


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="the float model's folder, <repository>/<name>/<version>")
    p.add_argument("--out", type=Path, help="repository to write the twin into (default: the model's own)")
    p.add_argument("--data", help="image models: folder with the Fashion-MNIST idx files")
    p.add_argument("--corpus", help=f"language models: {corpus_lib.CORPUS_HELP}")
    isa_check.add_argument(p)
    return p.parse_args(argv)


def card_fields(card: ModelCard) -> dict:
    """The float card as the training scripts' `fields`: everything but what `write_card` adds."""
    return card_document(card, exclude={"artifact", "created"})


def quantize_image_classifier(card: ModelCard, model_dir: Path, out: Path, args) -> None:
    from training import train
    from training.tasks import image_classification as task

    data = task.prepare(args.data, val_size=card.dataset.splits["validation"], seed=card.dataset.split_seed,
                        batch_size=512, augment_pad=0, augment_flip=False)
    if data.dataset["sha256"] != card.dataset.sha256:
        raise SystemExit(f"the data in {args.data or 'the default location'} are not the data {card.name} was "
                         "trained on (different sha256)")
    train.publish_int8(card.name, card_fields(card), model_dir, data, out, card.version, card.split().accuracy,
                       args.emulate)


def quantize_language_model(card: ModelCard, model_dir: Path, out: Path, args) -> None:
    from training import train_rnnlm
    from training.data.vocab import Vocab
    from training.tasks import language_model

    if not card.family.startswith("rnn/"):
        raise SystemExit(f"{card.name} is a {card.family} model: only recurrent language models have INT8 twins")
    data = language_model.prepare(args.corpus, unit=card.preprocess.tokenizer)
    if data.vocab != Vocab.load(model_dir / card.preprocess.vocab_file):
        raise SystemExit(f"the corpus gives a different vocabulary from {card.name}'s: not the text it was trained on")
    streams = {split: data.stream(split) for split in data.sequences}
    train_rnnlm.publish_int8(card.name, card_fields(card), model_dir, streams, out, card.version,
                             card.split().cross_entropy, args.emulate)


def quantize_text_classifier(card: ModelCard, model_dir: Path, out: Path, args) -> None:
    from training import text_tokenizer, train_transformer
    from training.data import tweets
    from training.tasks import text_classification as task

    split = tweets.prepare(None, seed=card.dataset.split_seed)
    if split.dataset["sha256"] != card.dataset.sha256:
        raise SystemExit(f"the tweets installed here are not the ones {card.name} was trained on (different sha256)")
    tok = text_tokenizer.load(model_dir / card.preprocess.tokenizer_file)
    enc = {s: task.Encoded.of(tok, split.texts[s], split.y[s]) for s in tweets.SPLITS}
    train_transformer.publish_int8(card_fields(card), model_dir, enc, out, card.version, card.split().accuracy,
                                   args.emulate)


BY_TASK = {"image-classification": quantize_image_classifier, "language-model": quantize_language_model,
           "text-classification": quantize_text_classifier}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    card = load_card(args.model)
    if card.quantization is not None:
        raise SystemExit(f"{args.model} is already quantized; give its float source, "
                         f"{card.quantization.source_model}")
    for isa in args.emulate:
        if not isa_check.available(isa):
            raise SystemExit(f"--emulate {isa}: no emulator here (Debian: apt-get install qemu-user)")
    out = args.out or args.model.resolve().parents[1]
    BY_TASK[card.task](card, args.model, out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
