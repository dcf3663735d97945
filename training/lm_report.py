"""Language-model results: n-gram orders against the recurrent models, on the same test split.

    zooserve lm-report                 # Markdown on stdout (the corpus: data/mysterious_island.txt)
    zooserve lm-report --readme docs/language-models.md   # also replace the text between the LM markers

The n-gram rows are estimated and scored now (orders 1..8 for chars, 1..5 for words, modified Kneser-Ney,
plus add-one rows as the simple baseline); their time is the estimation time and their size the ONNX graph
they would export to. The recurrent rows come from the cards of the newest `rnn/*` models in the
repository, whose figures were measured on their exported graphs; their time is the training time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zooserve.card import SHIPPED_REPOSITORIES
from training.data.corpus import CORPUS_HELP
from training.ngram.model import CorpusTooSmall, estimate
from training.ngram.onnx_graph import build_graph
from training.report import latest_cards, minutes, size, splice
from training.tasks import language_model as task

BEGIN, END = "<!-- lm-results:begin -->", "<!-- lm-results:end -->"
# KenLM lmplz on the same split, as the issue measured them (word perplexities; one sentence per line).
KENLM_WORD_PPL = {3: 112.0, 5: 109.9}
FALLBACK = (0.5, 1.0, 1.5)  # KenLM's --discount_fallback defaults


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", help=CORPUS_HELP)
    p.add_argument("--models", default=SHIPPED_REPOSITORIES,
                   help="model repository: a folder, or several joined by ':' (default: models:models-extra)")
    p.add_argument("--char-orders", type=int, default=8)
    p.add_argument("--word-orders", type=int, default=5)
    p.add_argument("--discount-fallback", type=float, nargs=3, metavar=("D1", "D2", "D3"),
                   help="Kneser-Ney discounts where the count-of-counts give none (small corpora)")
    p.add_argument("--readme", type=Path, help=f"replace the text between {BEGIN} and {END} in this file")
    p.add_argument("--dry-run", action="store_true", help="orders up to 3, no README")
    return p.parse_args(argv)


def ngram_rows(data, orders: range, smoothing: str, fallback=None) -> list[dict]:
    v = data.vocab
    rows = []
    for order in orders:
        kw = dict(order=order, vocab_size=len(v), bos=v.id(v.bos), eos=v.id(v.eos), smoothing=smoothing, add_k=1.0)
        note = ""
        try:
            lm = estimate(data.sequences["train"], discount_fallback=fallback, **kw)
        except CorpusTooSmall:
            # e.g. a char unigram model: a few dozen symbols, each seen thousands of times, so n1..n4 are
            # degenerate; KenLM needs --discount_fallback there too.
            lm = estimate(data.sequences["train"], discount_fallback=FALLBACK, **kw)
            note = " (fallback discounts)"
        s = lm.score(data.sequences["test"])
        label = f"{order}-gram " + ("KN" if smoothing == "kneser-ney" else "add-one") + note
        rows.append({"model": label, **task.metrics("test", s.tokens, -float(s.logp.sum())),
                     "time": f"{lm.estimation_s:.2f} s", "size": size(build_graph(lm).ByteSize()) if order > 1 else "n/a",
                     "entries": f"{sum(len(lev) for lev in lm.levels):,} n-grams", "order": order})
    return rows


def rnn_rows(models: Path) -> list[dict]:
    rows = []
    for _, card in latest_cards(models):
        if not card.family.startswith("rnn/"):
            continue
        test = card.split()
        cfg = card.training.model_config_
        label = f"{card.name} ({card.family.split('/')[1].upper()} {cfg['layers']}x{cfg['hidden_size']})"
        rows.append({"model": label, "split": "test", "examples": test.examples, "cross_entropy": test.cross_entropy,
                     "bits_per_token": test.bits_per_token, "perplexity": test.perplexity,
                     "time": minutes(card.training.wall_time_s), "size": size(card.artifact.bytes),
                     "entries": f"{card.training.parameters:,} weights"})
    return rows


def table(rows: list[dict], unit: str, anchors: dict[int, float] | None = None) -> str:
    head = ["Model", f"nats/{unit}", f"bits/{unit}", "Perplexity", "Tokens scored", "Time", "ONNX size", "Size"]
    if anchors:
        head.append("KenLM perplexity")
    lines = [head, ["---"] + ["---:"] * (len(head) - 1)]
    for r in rows:
        cells = [r["model"], f"{r['cross_entropy']:.4f}", f"{r['bits_per_token']:.4f}", f"{r['perplexity']:.2f}",
                 f"{r['examples']:,}", r["time"], r["size"], r["entries"]]
        if anchors:
            cells.append(f"{anchors[r['order']]:.1f}" if r.get("order") in anchors and "KN" in r["model"] else "")
        lines.append(cells)
    return "\n".join("| " + " | ".join(c) + " |" for c in lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    char_n = 3 if args.dry_run else args.char_orders
    word_n = 3 if args.dry_run else args.word_orders
    chars = task.prepare(args.corpus, unit="char", boundaries=True)
    words = task.prepare(args.corpus, unit="word")
    fb = tuple(args.discount_fallback) if args.discount_fallback else None
    char_rows = ngram_rows(chars, range(1, char_n + 1), "kneser-ney", fb) + ngram_rows(chars, range(3, 4), "add-k")
    char_rows += rnn_rows(args.models)
    word_rows = ngram_rows(words, range(1, word_n + 1), "kneser-ney", fb) + ngram_rows(words, range(2, 4), "add-k")
    block = "\n".join([
        f"**Characters** (test split: {chars.dataset['splits']['test']:,} characters including one end of line per "
        "paragraph):", "", table(char_rows, "char"), "",
        f"**Words** (lowercased words and punctuation, one sentence per line, `</s>` scored, unseen words as "
        f"`<unk>`; vocabulary {len(words.vocab):,}):", "", table(word_rows, "word", KENLM_WORD_PPL), "",
        "n-gram time: estimation on the training split, measured by this run. Recurrent time: training, from the "
        "card. ONNX size of an n-gram model: the exact-lookup graph it exports to (orders >= 2). The n-gram models "
        "predict each paragraph from `<s>`; the recurrent ones read the split as one stream from a zero state, so "
        "they score every character but the first, and carry context across paragraphs.",
    ])
    print(block)
    if args.readme and not args.dry_run:
        args.readme.write_text(splice(args.readme.read_text(), block, args.readme, BEGIN, END))
    return 0


if __name__ == "__main__":
    sys.exit(main())
