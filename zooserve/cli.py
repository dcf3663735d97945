"""`zooserve`: one command for the whole project, with a subcommand per job.

    zooserve serve                          # serve models/ on 127.0.0.1:8000 (ZOOSERVE_* settings or flags)
    zooserve train fashion-resnet --int8    # train a recipe, export ONNX, write the card (needs the train extras)
    zooserve check-repository --repository models
    zooserve COMMAND --help                 # that command's own options

Each subcommand is another module's `main(argv)`, imported only when it runs: this module imports nothing
from `service/` or `training/`, so the serving install (no torch) runs `zooserve serve` and answers a
training subcommand with what to install instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

PROG = "zooserve"
# A missing module of this project's own is a bug, never "install the train extras": except `training` as a
# whole, which the serve image leaves out (it ships zooserve/ and service/ only).
OWN_PACKAGES = ("zooserve", "service", "training")


@dataclass(frozen=True)
class Command:
    target: str  # "module:function", a `main(argv) -> int` imported only when the command runs
    summary: str  # its line in `zooserve --help`
    train: bool = False  # the training side: it (or what it imports) comes with the `train` extras (torch, ...)


COMMANDS = {
    "serve": Command("service.cli:main", "serve a model repository over HTTP"),
    "train": Command("training.train:main", "train an image classifier, export ONNX and its card", train=True),
    "train-ngram": Command("training.train_ngram:main", "estimate an n-gram language model (ONNX and ARPA)",
                           train=True),
    "train-rnn": Command("training.train_rnnlm:main", "train a char-level RNN, LSTM or GRU language model",
                         train=True),
    "train-mlp": Command("training.train_mlp:main", "train the from-scratch numpy MLP, export ONNX and its card",
                         train=True),
    "train-transformer": Command("training.train_transformer:main", "train the Transformer encoder text classifier",
                                 train=True),
    "train-autoencoder": Command("training.train_autoencoder:main", "train the autoencoder or the VAE (fashion-"
                                 "autoencoder, fashion-vae): two graphs and the card", train=True),
    "train-gan": Command("training.train_gan:main", "train the class-conditional DCGAN (fashion-dcgan)", train=True),
    "report": Command("training.report:main", "results table of the image classifiers", train=True),
    "lm-report": Command("training.lm_report:main", "results tables of the language models", train=True),
    "text-report": Command("training.text_report:main", "results table of the text classifiers", train=True),
    "gen-report": Command("training.gen_report:main", "image quality of the generators (Frechet distance, "
                          "class coverage)", train=True),
    "image-grids": Command("training.image_grids:main", "picture grids of samples and reconstructions for the docs",
                           train=True),  # needs training/ (not torch): the serve image lacks it
    "quantize": Command("training.quantize:main", "make (or remake) the INT8 twin of a float model", train=True),
    "fetch-data": Command("training.data.fashion_mnist:main", "find or download Fashion-MNIST and verify it",
                          train=True),
    "check-repository": Command("service.cli:check_main", "load every model as the server would, print its state"),
    "healthcheck": Command("service.healthcheck:main", "exit 0 when the local server is ready (for probes)"),
}


class MissingExtras(Exception):
    """A training subcommand on an install without the `train` extras."""


def build_parser() -> argparse.ArgumentParser:
    """The top level only: it names the subcommand; the subcommand's own parser reads the rest."""
    width = max(map(len, COMMANDS)) + 2
    listing = "\n".join(f"  {name:<{width}}{command.summary}" for name, command in COMMANDS.items())
    p = argparse.ArgumentParser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Train a zoo of models to ONNX and serve them.",
                                epilog=f"commands:\n{listing}\n\n`{PROG} COMMAND --help` shows a command's own options.")
    p.add_argument("command", choices=COMMANDS, metavar="COMMAND", help="one of the commands below")
    p.add_argument("args", nargs="*", default=[], metavar="ARGS", help="the command's own arguments")
    return p


def run(name: str, argv: list[str]) -> int:
    """Import the subcommand's `main` and run it on `argv`. A training subcommand that finds a third-party
    module (torch, onnx, ...) or the whole `training` package missing, at import or later (some import torch
    only when they need it), raises MissingExtras."""
    command = COMMANDS[name]
    module, _, function = command.target.partition(":")
    # argparse names a program after sys.argv[0]: with "zooserve train" there, the subcommand's own parser
    # says `usage: zooserve train ...` in its help and its errors, as the user typed it.
    saved = sys.argv
    sys.argv = [f"{PROG} {name}", *argv]
    try:
        return getattr(importlib.import_module(module), function)(argv)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not command.train or (missing.split(".")[0] in OWN_PACKAGES and missing != "training"):
            raise
        raise MissingExtras(f"this install lacks the `train` extras ({exc}), which training needs: in a zooserve "
                            f"checkout, `make test` installs them (torch's CPU build first) into .venv, or "
                            f"pip install '.[train]'") from exc
    finally:
        sys.argv = saved


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only the first word is ours (or -h): everything after the subcommand's name is the subcommand's.
    name = build_parser().parse_args(argv[:1]).command
    try:
        return run(name, argv[1:])
    except MissingExtras as exc:
        print(f"{PROG} {name}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
