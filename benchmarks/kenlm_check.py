"""Score the test split through a shipped ARPA file with KenLM's own query code, and compare with the card.

    pip install kenlm          # builds KenLM's Python module (a C++ compiler is needed)
    python benchmarks/kenlm_check.py models/island-ngram-word3/1 --corpus data/mysterious_island.txt

This is the check that other tools read zooserve's ARPA files as zooserve means them: KenLM's
`Model.score(sentence, bos=True, eos=True)` must give the card's test cross-entropy. It is a script rather
than a test because KenLM compiles from source on install, which the test setup avoids.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kenlm  # noqa: E402

from zooserve.card import load_card  # noqa: E402
from training.data.vocab import Vocab  # noqa: E402
from training.ngram.arpa import arpa_tokens  # noqa: E402
from training.tasks import language_model  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", type=Path)
    p.add_argument("--corpus", required=True)
    args = p.parse_args(argv)
    card = load_card(args.model_dir)
    vocab = Vocab.load(args.model_dir / card.preprocess.vocab_file)
    data = language_model.prepare(args.corpus, unit=vocab.kind, boundaries=True)
    names = arpa_tokens(vocab.tokens)
    t0 = time.perf_counter()
    model = kenlm.Model(str(args.model_dir / "model.arpa.gz"))
    load_s = time.perf_counter() - t0
    log10, tokens = 0.0, 0
    for seq in data.sequences["test"]:
        log10 += model.score(" ".join(names[i] for i in seq), bos=True, eos=True)
        tokens += len(seq) + 1  # the words (or chars) and </s>
    kenlm_ce = -log10 * math.log(10) / tokens
    card_ce = next(m.cross_entropy for m in card.metrics if m.split == "test")
    print(f"{card.name}: KenLM {kenlm_ce:.6f} nats/token (perplexity {math.exp(kenlm_ce):.3f}) over {tokens} tokens; "
          f"card {card_ce:.6f}; difference {kenlm_ce - card_ce:+.2e}; KenLM loaded the ARPA file in {load_s:.1f} s")
    return 0 if abs(kenlm_ce - card_ce) < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
