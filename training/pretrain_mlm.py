"""Masked-LM pretraining of the Transformer encoder (the BERT recipe), for `train_transformer --init`.

    python -m training.pretrain_mlm --corpus data/mysterious_island.txt --epochs 4
    zooserve train-transformer --init runs/tweets-mlm/pretrained --epochs 4

A from-scratch encoder sees only ~30k labelled tweets. Pretraining first teaches it English from
unlabelled text: the training split's tweets (their labels unused) and, with `--corpus`, a book cut into
tweet-sized pieces. 15% of the ordinary tokens are picked; of those, 80% become [MASK], 10% a random
token and 10% stay, and the model predicts the originals (Devlin et al. 2019).

The tokenizer is trained here, on the labelled training split only, exactly as `train_transformer` would,
and saved with the encoder; fine-tuning reuses both and checks that it reads the same data and split.
Outputs, under `<runs>/<name>/pretrained/`: `tokenizer.json`, `encoder.pt` (a state_dict of tensors,
read with weights_only=True; a checkpoint, not an artifact) and `config.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training import text_tokenizer as subword
from training.data import corpus as corpus_lib
from training.data import tweets
from training.engine.history import save_json
from training.engine.optim import OptimConfig
from training.engine.trainer import StepResult, TrainConfig, fit
from training.tasks.text_classification import Encoded, trim
from training.zoo.transformer import Encoder, MLMHead, TransformerConfig

IGNORE = -100  # target of the positions that were not masked
PIECE_WORDS = 40  # book paragraphs are cut into pieces about as long as a tweet


@dataclass
class MLMObjective:
    """Mask a batch on the fly and score the predictions of the masked tokens only."""

    vocab_size: int
    mask_id: int
    first_ordinary_id: int  # ids below this are special tokens, never masked
    rate: float = 0.15

    def mask(self, ids: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, T) -> (corrupted inputs (B, T), targets (B, T) with IGNORE where nothing was masked)."""
        ordinary = (ids >= self.first_ordinary_id) & attention.bool()
        picked = (torch.rand(ids.shape, device=ids.device) < self.rate) & ordinary
        targets = torch.where(picked, ids, torch.full_like(ids, IGNORE))
        roll = torch.rand(ids.shape, device=ids.device)
        random_ids = torch.randint(self.first_ordinary_id, self.vocab_size, ids.shape, device=ids.device)
        inputs = torch.where(picked & (roll < 0.8), torch.full_like(ids, self.mask_id), ids)
        inputs = torch.where(picked & (roll >= 0.8) & (roll < 0.9), random_ids, inputs)
        return inputs, targets

    def __call__(self, model: nn.Module, batch) -> StepResult:
        ids, attention, _ = batch
        ids, attention = trim(ids, attention)
        inputs, targets = self.mask(ids, attention)
        picked = targets != IGNORE  # (B, T)
        logits = model(inputs, attention, picked)  # (M, V), M = picked tokens
        count = int(picked.sum())
        loss = F.cross_entropy(logits, targets[picked]) if count else logits.sum() * 0.0
        correct = float((logits.argmax(-1) == targets[picked]).sum())
        return StepResult(loss, max(count, 1), {"correct": correct})


class MaskedLM(nn.Module):
    """The classifier's encoder with a tied MLM head, scoring only the masked positions."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.encoder = Encoder(cfg)
        # BERT's small init: with N(0, 1) embeddings the tied output layer starts with huge logits.
        nn.init.normal_(self.encoder.tokens.weight, std=0.02)
        self.head = MLMHead(self.encoder.tokens)

    def forward(self, ids: torch.Tensor, attention: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
        """picked (B, T) bool -> logits (M, V) of the M picked positions only: the vocabulary projection
        is the costliest layer, and the other 85% of positions have no target."""
        return self.head(self.encoder(ids, attention)[picked])  # (B, T, D) -> (M, D) -> (M, V)


def book_pieces(path: str | None) -> list[str]:
    """The training part of a book, cut into pieces of PIECE_WORDS words (none without --corpus)."""
    if not path:
        return []
    text = corpus_lib.load(path, allow_download=False).split()["train"]
    words = " ".join(corpus_lib.paragraphs(text)).split()
    return [" ".join(words[i:i + PIECE_WORDS]) for i in range(0, len(words), PIECE_WORDS)]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tweets.add_data_arguments(p)
    p.add_argument("--corpus", help="extra unlabelled text, e.g. data/mysterious_island.txt")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--ff-dim", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--name", default="tweets-mlm")
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="200 texts, one short epoch, under <runs>/dry-run/")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = args.runs / "dry-run" if args.dry_run else args.runs
    split = tweets.prepare(args.data, text_column=args.text_column, label_column=args.label_column,
                           seed=args.seed, limit=200 if args.dry_run else 0)
    tok_cfg = subword.TokenizerConfig(vocab_size=args.vocab_size, max_length=args.max_length)
    tok = subword.train(split.texts["train"], tok_cfg)
    unlabelled = split.texts["train"] + book_pieces(args.corpus)[:200 if args.dry_run else None]
    model_cfg = TransformerConfig(vocab_size=tok.get_vocab_size(), num_classes=len(split.labels),
                                  max_length=args.max_length, d_model=args.d_model, heads=args.heads,
                                  layers=args.layers, ff_dim=args.ff_dim, dropout=args.dropout,
                                  pad_id=tok.token_to_id(subword.SPECIAL_TOKENS["pad"]))
    model = MaskedLM(model_cfg)
    objective = MLMObjective(tok.get_vocab_size(), tok.token_to_id(subword.SPECIAL_TOKENS["mask"]),
                             first_ordinary_id=len(subword.SPECIAL_TOKENS))
    train = Encoded.of(tok, unlabelled, np.zeros(len(unlabelled), np.int64))
    val = Encoded.of(tok, split.texts["validation"], split.y["validation"])
    train_cfg = TrainConfig(epochs=1 if args.dry_run else args.epochs, batch_size=args.batch_size, seed=args.seed,
                            clip_grad=1.0, max_batches=3 if args.dry_run else 0, progress=not args.no_progress)
    optim_cfg = OptimConfig(name="adamw", lr=args.lr, weight_decay=0.01, schedule="onecycle", pct_start=0.1)
    torch.manual_seed(args.seed)  # the same masks whatever ran before
    result = fit(model, objective, train.batches(args.batch_size, shuffle=True, seed=args.seed), val.batches(256),
                 train_cfg, optim_cfg, device=torch.device("cpu"))
    out = runs / args.name / "pretrained"
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / subword.TOKENIZER_FILE))
    torch.save(model.encoder.state_dict(), out / "encoder.pt")
    save_json(result.history, out / "history.json")
    (out / "config.json").write_text(json.dumps({
        "model_config": dataclasses.asdict(model_cfg), "tokenizer_config": dataclasses.asdict(tok_cfg),
        "dataset": split.dataset, "unlabelled_texts": len(unlabelled), "corpus": args.corpus,
        "epochs_run": result.epochs_run, "wall_time_s": round(result.wall_time_s, 1),
        "val_masked_accuracy": result.history[result.best_epoch - 1]["val_accuracy"]}, indent=2) + "\n")
    print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
