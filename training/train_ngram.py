"""Estimate an n-gram language model (interpolated modified Kneser-Ney, or add-k) and export it.

    zooserve train-ngram --unit char --order 7 --name island-ngram-char
    zooserve train-ngram --unit word --order 3 --name island-ngram-word3 --corpus ...

Writes `<out>/<name>/<version>/`: `model.onnx` (context (B, N-1) [, candidates (B, K)] -> log_probs (B, V)
or (B, K): see training/ngram/onnx_graph.py), `model.arpa.gz` (standard ARPA back-off format, readable by
KenLM and SRILM), `vocab.json` and the card `model.json`. Before writing, it checks the ONNX graph against
the numpy reference (<= 1e-5 on log-probabilities, with and without candidates) and that scoring the test
split through the ARPA file gives the model's own figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from training.data.corpus import CORPUS_HELP, END_MARKER, TITLE_LINE
from training.export.card import next_version, write_card
from training.export.onnx_export import file_digest
from training.ngram import arpa
from training.ngram.model import NgramLM, estimate
from training.ngram.onnx_graph import export
from training.tasks import language_model as task

PARITY_ATOL = 1e-5
PARITY_CONTEXTS = 1000
PARITY_CANDIDATES = 8
DRY_RUN_CHARS = 20_000


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", help=CORPUS_HELP)
    p.add_argument("--title-line", default=TITLE_LINE, help="keep text from this line ('' = from the top)")
    p.add_argument("--end-marker", default=END_MARKER, help="and up to this marker ('' = to the end)")
    p.add_argument("--unit", choices=("char", "word"), default="char")
    p.add_argument("--order", type=int, default=5)
    p.add_argument("--smoothing", choices=("kneser-ney", "add-k"), default="kneser-ney")
    p.add_argument("--add-k", type=float, default=1.0, help="k for add-k smoothing")
    p.add_argument("--min-count", type=int, default=1, help="word vocabulary: minimum training count")
    p.add_argument("--discount-fallback", type=float, nargs=3, metavar=("D1", "D2", "D3"),
                   help="discounts to use where the count-of-counts give none (KenLM's --discount_fallback)")
    p.add_argument("--name", help="model name (default: ngram-UNIT-ORDER)")
    p.add_argument("--out", type=Path, help="model repository (default: models/)")
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--version", type=int)
    p.add_argument("--no-arpa", action="store_true", help="skip the ARPA file")
    p.add_argument("--dry-run", action="store_true",
                   help=f"the first {DRY_RUN_CHARS} chars of each split; writes only under <runs>/dry-run/")
    return p.parse_args(argv)


def check_onnx(lm: NgramLM, path: Path, contexts: np.ndarray, seed: int = 0) -> dict:
    """Compare onnxruntime with the numpy reference on real contexts (B, N-1), over the whole vocabulary and
    for PARITY_CANDIDATES random candidate tokens per row; raise beyond PARITY_ATOL."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # not the warning that `candidates` is an overridable initializer: it is meant to be
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"context": contexts})[0]  # (B, V): the default candidates, every token
    want = lm.log_distribution(contexts)
    candidates = np.random.default_rng(seed).integers(0, lm.vocab_size, (len(contexts), PARITY_CANDIDATES))
    picked = sess.run(None, {"context": contexts, "candidates": candidates})[0]  # (B, K)
    diff = max(float(np.max(np.abs(got - want))),
               float(np.max(np.abs(picked - lm.log_probs(contexts, candidates)))))
    agree = float(np.mean(got.argmax(1) == want.argmax(1)))
    if diff > PARITY_ATOL:
        raise RuntimeError(f"{path}: max |ORT - numpy| = {diff:.3g} on log-probabilities (tolerance {PARITY_ATOL})")
    return {"reference": "numpy", "max_abs_diff": diff, "argmax_agreement": agree, "inputs": len(contexts),
            "opset": 18, "onnxruntime": ort.__version__}


def sample_contexts(lm: NgramLM, sequences: list[np.ndarray], n: int, seed: int = 0) -> np.ndarray:
    """`n` real contexts (n, N-1) from the given sequences, `<s>`-padded at their starts."""
    rows = []
    rng = np.random.default_rng(seed)
    for i in rng.integers(0, len(sequences), size=n):
        seq = np.concatenate(([lm.bos] * (lm.order - 1), sequences[i]))
        end = rng.integers(lm.order - 1, len(seq) + 1)
        rows.append(seq[end - (lm.order - 1):end])
    return np.array(rows, dtype=np.int64).reshape(n, lm.order - 1)


def check_arpa(path: Path, lm_score, vocab, sequences: list[np.ndarray]) -> float:
    """Score `sequences` through the ARPA file with plain back-off; return the largest per-token difference."""
    ref = arpa.ArpaLM(path)
    names = arpa.arpa_tokens(vocab.tokens)
    got = np.array([lp for s in sequences for lp in ref.sentence_logp([names[i] for i in s])])
    diff = float(np.max(np.abs(got - lm_score.logp)))
    if diff > 1e-5:
        raise RuntimeError(f"{path}: back-off scoring differs from the model by {diff:.3g} nats on a token")
    return diff


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.order < 2:
        raise SystemExit("--order must be at least 2 for export (an order-1 model has no context to serve)")
    name = args.name or f"ngram-{args.unit}-{args.order}"
    out = args.out or (args.runs / "dry-run" / "models" if args.dry_run else Path("models"))
    t0 = time.perf_counter()
    data = task.prepare(args.corpus, unit=args.unit, boundaries=True, min_count=args.min_count,
                        title_line=args.title_line, end_marker=args.end_marker,
                        limit_chars=DRY_RUN_CHARS if args.dry_run else 0)
    prep_s = time.perf_counter() - t0
    v = data.vocab
    lm = estimate(data.sequences["train"], order=args.order, vocab_size=len(v), bos=v.id(v.bos), eos=v.id(v.eos),
                  smoothing=args.smoothing, add_k=args.add_k,
                  discount_fallback=tuple(args.discount_fallback) if args.discount_fallback else None)
    scores = {split: lm.score(data.sequences[split]) for split in ("validation", "test")}
    figures = [task.metrics(split, s.tokens, -float(s.logp.sum())) for split, s in scores.items()]
    print(f"{name}: order {args.order} {args.unit} {args.smoothing}, estimated in {lm.estimation_s:.2f}s; "
          + ", ".join(f"{m['split']} {m['cross_entropy']:.4f} nats/token (ppl {m['perplexity']:.2f})" for m in figures),
          flush=True)

    version = args.version or next_version(out, name)
    model_dir = out / name / str(version)
    export(lm, model_dir / "model.onnx", doc=f"{name}: order-{args.order} {args.unit} n-gram LM ({args.smoothing})")
    parity = check_onnx(lm, model_dir / "model.onnx",
                        sample_contexts(lm, data.sequences["test"], PARITY_CONTEXTS))
    extra = [v.save(model_dir / "vocab.json")]
    arpa_diff = None
    if not args.no_arpa:
        arpa_path = arpa.write_arpa(lm, v.tokens, model_dir / "model.arpa.gz")
        arpa_diff = check_arpa(arpa_path, scores["test"], v, data.sequences["test"])
        extra.append(arpa_path)
    entries = sum(len(lev) for lev in lm.levels)
    fields = {
        "name": name, "version": version, "task": "language-model",
        "family": "ngram/kn" if args.smoothing == "kneser-ney" else "ngram/add-k",
        "description": f"Order-{args.order} {args.unit} n-gram LM, "
                       + ("interpolated modified Kneser-Ney" if args.smoothing == "kneser-ney" else f"add-{args.add_k} smoothing")
                       + f", on {data.dataset['name']}",
        "inputs": [{"name": "context", "datatype": "INT64", "shape": [-1, args.order - 1]},
                   {"name": "candidates", "datatype": "INT64", "shape": [-1, -1], "optional": True}],
        "outputs": [{"name": "log_probs", "datatype": "FP32", "shape": [-1, -1]}],  # (B, V) or (B, K)
        "preprocess": task.text_preprocess(v, context_length=args.order - 1),
        "batching": {"max_batch_size": 64, "max_delay_ms": 1.0},
        "metrics": figures,
        "dataset": data.dataset,
        "parity": parity,
        "training": {
            "arch": "ngram",
            "model_config": {"order": args.order, "unit": args.unit, "smoothing": args.smoothing,
                             "add_k": args.add_k if args.smoothing == "add-k" else None, "min_count": args.min_count,
                             "discounts": [list(lev.discounts) for lev in lm.levels],
                             "ngram_types": [len(lev) for lev in lm.levels],
                             "arpa_max_abs_diff_nats": arpa_diff},
            "train_config": {"corpus": str(args.corpus) if args.corpus else None, "dry_run": args.dry_run,
                             "preparation_s": round(prep_s, 2)},
            "wall_time_s": round(lm.estimation_s, 3), "parameters": entries, "onnx": onnx.__version__,
        },
        "extra_files": [file_digest(p) for p in extra],
    }
    write_card(model_dir, fields)
    print(f"wrote {model_dir} ({entries} n-grams; ONNX parity {parity['max_abs_diff']:.2e}"
          + (f", ARPA agrees to {arpa_diff:.1e} nats)" if arpa_diff is not None else ")"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
