"""n-gram LMs: counts by hand, modified Kneser-Ney against a plain dictionary implementation, probabilities
that sum to one, the ONNX graph against the reference, and the ARPA round trip."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.ngram.arpa import ArpaLM, arpa_tokens, level_tokens, write_arpa
from training.ngram.model import LOG_ZERO, CorpusTooSmall, estimate
from training.ngram.onnx_graph import export

# The classic bigram example (Jurafsky & Martin, ch. 3).
SAM = ["I am Sam", "Sam I am", "I do not like green eggs and ham"]
FALLBACK = (0.5, 1.0, 1.5)


def encode(sentences: list[list[str]]):
    tokens = ["<unk>", "<s>", "</s>"] + sorted({w for s in sentences for w in s})
    index = {t: i for i, t in enumerate(tokens)}
    return tokens, [np.array([index[w] for w in s], dtype=np.int64) for s in sentences]


def fit(sentences, order, **kw):
    tokens, ids = encode(sentences)
    lm = estimate(ids, order=order, vocab_size=len(tokens), bos=1, eos=2, **kw)
    return tokens, ids, lm


def counts_by_text(lm, tokens, k) -> dict[tuple[str, ...], int]:
    mat, lev = level_tokens(lm)[k - 1], lm.levels[k - 1]
    return {tuple(tokens[t] for t in row): int(c) for row, c in zip(mat, lev.count) if c}


def random_corpus(seed: int, n: int = 400, vocab: int = 400) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[f"w{min(int(z), vocab) - 1}" for z in rng.zipf(1.4, size=rng.integers(1, 12))] for _ in range(n)]


def test_bigram_counts_of_the_sam_example():
    tokens, _, lm = fit([s.split() for s in SAM], 2, discount_fallback=FALLBACK)
    bigrams = counts_by_text(lm, tokens, 2)
    assert bigrams[("<s>", "I")] == 2 and bigrams[("I", "am")] == 2 and bigrams[("Sam", "</s>")] == 1
    assert bigrams[("am", "Sam")] == 1 and bigrams[("am", "</s>")] == 1 and bigrams[("ham", "</s>")] == 1
    assert sum(bigrams.values()) == 3 + 3 + 8 + 3  # words plus one </s> per sentence
    assert counts_by_text(lm, tokens, 1)[("I",)] == 3


def test_no_ngram_crosses_a_sentence_boundary():
    tokens, _, lm = fit([["a", "b"], ["c", "d"]], 3, discount_fallback=FALLBACK)
    trigrams = counts_by_text(lm, tokens, 3)
    assert set(trigrams) == {("<s>", "a", "b"), ("a", "b", "</s>"), ("<s>", "c", "d"), ("c", "d", "</s>")}


def naive_kneser_ney(sentences: list[list[str]], order: int, vocab: list[str]):
    """Interpolated modified Kneser-Ney written the slow, obvious way, with dictionaries."""
    grams = [Counter() for _ in range(order + 1)]
    for s in sentences:
        seq = ["<s>", *s, "</s>"]
        for k in range(1, order + 1):
            for i in range(len(seq) - k + 1):
                grams[k][tuple(seq[i:i + k])] += 1
    adjusted = [Counter() for _ in range(order + 1)]
    adjusted[order] = grams[order]
    for k in range(order - 1, 0, -1):
        for g in grams[k + 1]:
            adjusted[k][g[1:]] += 1  # distinct left extensions
        for g, c in grams[k].items():
            if g[0] == "<s>":
                adjusted[k][g] = c
    adjusted[1].pop(("<s>",), None)
    discounts = {}
    for k in range(1, order + 1):
        n = Counter(adjusted[k].values())
        y = n[1] / (n[1] + 2 * n[2])
        discounts[k] = [0.0, 1 - 2 * y * n[2] / n[1], 2 - 3 * y * n[3] / n[2], 3 - 4 * y * n[4] / n[3]]
    by_context = [defaultdict(dict) for _ in range(order + 1)]
    for k in range(1, order + 1):
        for g, a in adjusted[k].items():
            by_context[k][g[:-1]][g[-1]] = a
    predicted = [w for w in vocab if w != "<s>"]

    def prob(context: tuple[str, ...], w: str) -> float:
        if w == "<s>":
            return 0.0
        p = 1 / len(predicted)
        for k in range(1, order + 1):
            h = context[len(context) - (k - 1):] if k > 1 else ()
            ext = by_context[k].get(h)
            if not ext:  # an unseen context: alpha = 0, gamma = 1
                continue
            total, d = sum(ext.values()), discounts[k]
            gamma = sum(d[min(a, 3)] for a in ext.values()) / total
            p = max(ext.get(w, 0) - d[min(ext.get(w, 0), 3)], 0) / total + gamma * p
        return p

    return prob


def test_kneser_ney_matches_a_plain_dictionary_implementation():
    corpus = random_corpus(1, n=600, vocab=400)
    tokens, ids, lm = fit(corpus, 3)
    prob = naive_kneser_ney(corpus, 3, tokens)
    rng = np.random.default_rng(2)
    contexts = np.array([[1, 1]] + [rng.integers(0, len(tokens), size=2) for _ in range(40)])
    got = lm.distribution(contexts)
    for row, ctx in zip(got, contexts):
        want = [prob(tuple(tokens[t] for t in ctx), w) for w in tokens]
        np.testing.assert_allclose(row, want, rtol=1e-12, atol=1e-15)


def test_discounts_follow_chen_and_goodman():
    corpus = random_corpus(3, n=600, vocab=400)
    _, _, lm = fit(corpus, 2)
    # Top order: raw counts of bigram types.
    n = np.bincount(lm.levels[1].count, minlength=5)[1:5]
    y = n[0] / (n[0] + 2 * n[1])
    assert lm.levels[1].discounts == pytest.approx((1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1],
                                                    3 - 4 * y * n[3] / n[2]))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), order=st.integers(2, 5), smoothing=st.sampled_from(["kneser-ney", "add-k"]))
def test_probabilities_sum_to_one_for_any_context(seed, order, smoothing):
    corpus = random_corpus(seed, n=150)
    tokens, _, lm = fit(corpus, order, smoothing=smoothing, add_k=0.5, discount_fallback=FALLBACK)
    rng = np.random.default_rng(seed)
    contexts = rng.integers(0, len(tokens), size=(32, order - 1))
    dist = lm.distribution(contexts)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(dist[:, 1] == 0.0)  # <s> is never predicted
    assert np.all(dist[:, [i for i in range(len(tokens)) if i != 1]] > 0)


def test_add_k_is_the_textbook_formula():
    corpus = [["a", "b"], ["a", "c"], ["b"]]
    tokens, _, lm = fit(corpus, 2, smoothing="add-k", add_k=1.0)
    V = len(tokens) - 1  # everything but <s> can follow
    a, b = tokens.index("a"), tokens.index("b")
    # c(a b) = 1, c(a) as a context = 2.
    assert lm.distribution(np.array([[a]]))[0, b] == pytest.approx((1 + 1) / (2 + V))
    # A context never seen gets the uniform distribution.
    assert lm.distribution(np.array([[0]]))[0, b] == pytest.approx(1 / V)


def test_unseen_words_score_as_unk():
    tokens, ids, lm = fit(random_corpus(4), 3, discount_fallback=FALLBACK)
    s = lm.score([np.array([0, 0], dtype=np.int64)])  # two <unk>
    assert s.tokens == 3 and np.all(np.isfinite(s.logp))


def test_corpus_too_small_for_the_order_is_a_clear_error():
    with pytest.raises(CorpusTooSmall, match="order 5"):
        fit([["a", "b"], ["b", "a"]], 5, discount_fallback=FALLBACK)
    with pytest.raises(CorpusTooSmall, match="discount"):
        fit([["a", "b"], ["b", "a"], ["a"]], 2)


def test_onnx_graph_equals_the_reference(tmp_path):
    tokens, ids, lm = fit(random_corpus(5, n=300), 4)
    path = export(lm, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    contexts = np.concatenate([rng.integers(0, len(tokens), size=(64, 3)),
                               np.array([[1, 1, 1], [1, 1, 3], [-5, 10_000, 4]])])  # <s>-padded; out of range
    got = sess.run(None, {"context": contexts})[0]
    want = lm.log_distribution(contexts)
    assert got.shape == (len(contexts), len(tokens)) and got.dtype == np.float32
    assert np.all(np.isfinite(got)) and np.all(got[:, 1] == np.float32(LOG_ZERO))  # <s> is never predicted
    assert np.max(np.abs(got - want)) <= 1e-5


def test_onnx_graph_gives_the_candidates_log_probabilities(tmp_path):
    """`candidates` (B, K) or (1, K) picks columns of the whole distribution: the reference's values, and the
    graph's own full output (float32, same lookups and arithmetic per element; a vectorised Log may round its
    last bit differently by position, hence 1e-6); a candidate that is no token gives NaN."""
    tokens, ids, lm = fit(random_corpus(5, n=300), 4)
    sess = ort.InferenceSession(str(export(lm, tmp_path / "m.onnx")), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["context"]  # candidates has a default: not required
    assert [i.name for i in sess.get_overridable_initializers()] == ["candidates"]
    rng = np.random.default_rng(1)
    V = len(tokens)
    contexts = np.concatenate([rng.integers(0, V, size=(40, 3)), np.array([[1, 1, 1], [-5, 10_000, 4]])])
    full = sess.run(None, {"context": contexts})[0]  # (B, V)
    per_row = np.concatenate([rng.integers(0, V, size=(len(contexts), 5)), np.ones((len(contexts), 1), np.int64)], 1)
    shared = np.array([[0, 2, 2, V - 1]])  # (1, K): the same candidates for every row, with a repeat
    for cand in (per_row, shared):
        got = sess.run(None, {"context": contexts, "candidates": cand})[0]
        assert got.shape == (len(contexts), cand.shape[1]) and got.dtype == np.float32
        assert np.max(np.abs(got - lm.log_probs(contexts, cand))) <= 1e-5
        np.testing.assert_allclose(got, np.take_along_axis(full, np.broadcast_to(cand, got.shape), 1), rtol=1e-6, atol=1e-6)
    bad = sess.run(None, {"context": contexts[:2], "candidates": np.array([[-1, V, 3]])})[0]
    assert np.isnan(bad[:, :2]).all() and np.isfinite(bad[:, 2]).all()


def test_arpa_round_trip_gives_the_models_probabilities(tmp_path):
    corpus = random_corpus(6, n=300)
    tokens, ids, lm = fit(corpus, 3)
    path = write_arpa(lm, tuple(tokens), tmp_path / "m.arpa.gz")
    arpa = ArpaLM(path)
    assert arpa.order == 3
    assert set(w for (w,) in (g for g in arpa.prob if len(g) == 1)) == set(tokens)
    assert arpa.prob[("<s>",)] == -99.0
    got = np.array([lp for s in corpus[:50] for lp in arpa.sentence_logp(s)])
    want = lm.score(ids[:50]).logp
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert math.isclose(float(np.exp(-got.mean())), lm.score(ids[:50]).perplexity, rel_tol=1e-5)


def test_arpa_header_counts_match_the_sections(tmp_path):
    tokens, _, lm = fit(random_corpus(7), 3)
    text = write_arpa(lm, tuple(tokens), tmp_path / "m.arpa").read_text()
    header = dict(line.split("=") for line in text.split("\n\n")[0].splitlines()[1:])
    for k in (1, 2, 3):
        section = text.split(f"\\{k}-grams:\n")[1].split("\n\n")[0].strip().splitlines()
        assert int(header[f"ngram {k}"]) == len(section) == len(lm.levels[k - 1])


def test_arpa_writes_spaces_as_the_sentencepiece_mark():
    assert arpa_tokens(("a", " ", "<s>")) == ["a", "\u2581", "<s>"]
    with pytest.raises(ValueError, match="whitespace"):
        arpa_tokens(("a", "\t"))
