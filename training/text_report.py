"""Results table for the text classifiers: accuracy and macro-F1 from each card, the TF-IDF baseline the
card recorded, size, training time, and inference speed measured now on real test texts, onnxruntime
against PyTorch, at batch 1 and batch 32.

    zooserve text-report                                 # text classifiers under models/, Markdown on stdout
    zooserve text-report --readme docs/text-classification.md   # also replace the text between the markers
    zooserve text-report --dry-run                       # 3 repeats: a smoke test

Inputs are the first texts of the card's own test split, tokenised with the model's tokenizer.json as the
service does, so batch 32 pads to the longest of those 32 tweets. The PyTorch side is the encoder rebuilt
from the card's model_config with the checkpoint's best weights (`<runs>/<name>/last.pt`). The baseline
is timed too: scikit-learn's TF-IDF + logistic regression refitted on the card's training split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from zooserve.card import SHIPPED_REPOSITORIES, ModelCard
from training import baseline_tfidf
from training.data import tweets
from training.report import (BATCHES, NA, footer, interleaved_medians, latest_cards, minutes, ort_session, size,
                             footnote, speed_cells, splice, torch_model)
from training.text_tokenizer import encode
from training.zoo.transformer import TransformerConfig

BEGIN, END = "<!-- text-results:begin -->", "<!-- text-results:end -->"
HEADER = ["Model", "Test acc.", "Macro-F1", "Params", "Size", "Train time",
          "ORT b1 (ms)", "PyTorch b1 (ms)", "Speed-up b1", "ORT b32 (ms)", "PyTorch b32 (ms)", "Speed-up b32"]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tweets.add_data_arguments(p)
    p.add_argument("--models", default=SHIPPED_REPOSITORIES,
                   help="model repository: a folder, or several joined by ':' (default: models:models-extra)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="where the training checkpoints are")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for ORT and torch (default 1)")
    p.add_argument("--repeats", type=int, default=50, help="timed runs per batch size")
    p.add_argument("--readme", type=Path, help=f"replace the text between {BEGIN} and {END} in this file")
    p.add_argument("--dry-run", action="store_true", help="3 repeats, 300 texts per split")
    return p.parse_args(argv)


def build_encoder(card: ModelCard) -> torch.nn.Module:
    return TransformerConfig(**card.training.model_config_).build()


def time_model(model_dir: Path, card: ModelCard, model, texts: list[str], threads: int, repeats: int,
               check: bool = True) -> dict:
    """{batch: (ORT ms, PyTorch ms or None)} on the first `batch` test texts; with `check` (the model has the
    checkpoint's weights), also that both agree."""
    tok = Tokenizer.from_file(str(model_dir / card.preprocess.tokenizer_file))
    sess = ort_session(model_dir / card.artifact.file, threads)
    out = {}
    for batch in BATCHES:
        ids, mask = encode(tok, texts[:batch])  # (B, T) int64, T = the longest of these texts
        feeds = {"input_ids": ids, "attention_mask": mask}
        fns = [lambda: sess.run(None, feeds)]
        if model is not None:
            ti, tm = torch.from_numpy(ids), torch.from_numpy(mask)
            fns.append(lambda: model(ti, tm))
            if check and not np.allclose(sess.run(None, feeds)[0], model(ti, tm).numpy(), atol=1e-3):
                raise SystemExit(f"{card.name}: the checkpoint does not reproduce {card.artifact.file}")
        t = interleaved_medians(fns, repeats, warmup=3)
        out[batch] = (t[0], t[1] if model is not None else None)
    return out


def time_baseline(split: tweets.Split, repeats: int) -> tuple[dict, dict]:
    """The TF-IDF baseline refitted on the split: its figures and {batch: (ms, None)} for predict_proba."""
    figures, clf = baseline_tfidf.fit(split)
    texts = split.texts["test"]
    out = {}
    for batch in BATCHES:
        chunk = texts[:batch]
        out[batch] = (interleaved_medians([lambda: clf.predict_proba(chunk)], repeats, warmup=3)[0], None)
    return figures, out


def cells(name: str, acc: float, f1: float, params: str, nbytes: str, train: str, timings: dict) -> list[str]:
    return [name, f"{acc:.2%}", f"{f1:.4f}", params, nbytes, train, *speed_cells(timings)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.readme:
        splice(args.readme.read_text(), "", args.readme, BEGIN, END)  # fail on missing markers before any timing
    entries = [e for e in latest_cards(args.models) if e[1].task == "text-classification"]
    if not entries:
        print(f"zooserve text-report: error: no text-classification cards under {args.models}", file=sys.stderr)
        return 1
    repeats = 3 if args.dry_run else args.repeats
    torch.set_num_threads(args.threads)
    split = tweets.prepare(args.data, text_column=args.text_column, label_column=args.label_column, seed=0,
                           limit=300 if args.dry_run else 0)
    rows, notes = [], []
    with torch.inference_mode():
        for model_dir, card in entries:
            print(f"timing {card.name} v{card.version} ...", file=sys.stderr, flush=True)
            model, note = torch_model(card, args.runs, build_encoder)
            test = card.split()
            rows.append(cells(card.name, test.accuracy, test.macro_f1, f"{card.training.parameters:,}",
                              size(card.artifact.bytes), minutes(card.training.wall_time_s),
                              time_model(model_dir, card, model, split.texts["test"], args.threads, repeats,
                                         check=note is None)))
            if note:
                notes.append(footnote(card, model, note))
    figures, timings = time_baseline(split, repeats)
    rows.append(cells("TF-IDF + logistic regression (baseline)", figures["test_accuracy"], figures["test_macro_f1"],
                      f"{figures['features']:,} features", NA, NA, timings))
    notes.append("baseline: the ORT columns time scikit-learn's predict_proba (TF-IDF transform included) on the "
                 "same raw texts; it has no ONNX graph.")
    lines = [HEADER, ["---"] + ["---:"] * (len(HEADER) - 1)] + rows
    block = "\n".join("| " + " | ".join(c) + " |" for c in lines) + "\n\n" + footer(
        notes, args.threads, {b: repeats for b in BATCHES}, 3, inputs="the first test texts")
    print(block)
    if args.readme:
        args.readme.write_text(splice(args.readme.read_text(), block, args.readme, BEGIN, END))
    return 0


if __name__ == "__main__":
    sys.exit(main())
