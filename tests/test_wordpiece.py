"""zooserve.wordpiece against Hugging Face `tokenizers`: the same ids and attention masks, exactly, for the
shipped tokenizer files, one trained here by training/text_tokenizer.py, and variants of their settings, on
the tweets corpus and on generated texts (accents, CJK, emoji, control and zero-width characters, combining
marks, punctuation, over-long words, the special tokens themselves, texts long enough to truncate). Then what
the reader refuses, each refusal naming its field.

`tokenizers` stays in the training and test install; the comparisons skip where it is missing.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zooserve.bert_text import BertNormalizer, words
from zooserve.wordpiece import WordPieceTokenizer

ROOT = Path(__file__).resolve().parents[1]
HAS_TOKENIZERS = importlib.util.find_spec("tokenizers") is not None
needs_tokenizers = pytest.mark.skipif(not HAS_TOKENIZERS, reason="`tokenizers` is not installed (it is in the "
                                      "train extra): nothing to compare with")


def distinct_tokenizer_files() -> list[Path]:
    """The shipped text classifiers' tokenizer.json files, one of each (an INT8 twin shares its float model's),
    smallest first: the 8,000-token vocabulary trained on the tweets, then BERT's uncased 30,522."""
    found: dict[bytes, Path] = {}
    for path in sorted(ROOT.glob("models*/*/*/tokenizer.json")):
        found.setdefault(hashlib.sha256(path.read_bytes()).digest(), path)
    return sorted(found.values(), key=lambda p: p.stat().st_size)


SHIPPED = distinct_tokenizer_files()
CORPUS = ["i love this so much", "this is terrible and i hate it", "meh, it is fine i guess", "Café naïve résumé",
          "what a wonderful day", "loving the new update!!!", "hate hate hate", "ok", "中文 日本語 😀 👍🏽",
          "Ça va? ÉLAN façade über straße ΟΔΟΣ", "@user #monday http://t.co/x don't can't"] * 5
PIECES = ["é", "e\u0301", "Ç", "ñ", "İ", "ß", "Σ", "ΟΔΟΣ", "中文", "日本語", "한국어", "😀", "👍🏽", "🥰",
          "\u200b", "\u200d", "\ufeff", "\x00", "\x07", "\x0b", "\x1f", "\x7f", "\x85", "\t", "\r\n", "\u3000",
          "\u00a0", "\u0301", "\u0308\u0323", "\u05b7", "\U00011938", "\u1734", "\ufffd", "\ue000", "!", "?!",
          "...", "#", "@user", "http://t.co/x", "don't", "\u2019", "\u00bf", "\u2e43", "[SEP]", "[CLS]", "[UNK]",
          "[PAD]", "[MASK]", "[sep]", "[cls]", "[UNK", "a[SEP]b", "x" * 101, "ab" * 51, "wonderful", "hate",
          "supercalifragilistic", "Ⅻ", "ﬁ", "Å", "Ａ"]
TEXTS = st.lists(st.tuples(st.one_of(st.sampled_from(PIECES), st.text(max_size=6), st.sampled_from(CORPUS)),
                           st.sampled_from(["", " ", "  ", "\n"])), max_size=60).map(
    lambda parts: "".join(p + sep for p, sep in parts))


def reference(doc: dict):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(json.dumps(doc))


def assert_same(doc: dict, texts: list[str]):
    """encode_batch's ids and attention masks equal tokenizers' (the masks show where each text's own ids
    end, so the unpadded `encode` is checked too)."""
    ref, new = reference(doc), WordPieceTokenizer(doc)
    want = ref.encode_batch(texts)
    ids, mask = new.encode_batch(texts)
    want_ids, want_mask = np.array([e.ids for e in want]), np.array([e.attention_mask for e in want])
    same = (ids == want_ids).all(axis=1) & (mask == want_mask).all(axis=1)
    if not same.all():
        i = int(np.argmin(same))
        assert (ids[i].tolist(), mask[i].tolist()) == (want[i].ids, want[i].attention_mask), repr(texts[i])
    assert new.vocab_size == ref.get_vocab_size()


@pytest.fixture(scope="module")
def trained() -> dict:
    """A 200-token WordPiece vocabulary trained here by the training code, truncating to 16, padding to the
    longest."""
    from training import text_tokenizer

    tok = text_tokenizer.train(CORPUS, text_tokenizer.TokenizerConfig(vocab_size=200, max_length=16, min_frequency=1))
    return json.loads(tok.to_str())


def shipped(i: int) -> dict:
    if len(SHIPPED) <= i:
        pytest.skip("no shipped text classifier (models/tweets-transformer*) in this checkout")
    return json.loads(SHIPPED[i].read_text(encoding="utf-8"))


def variant(doc: dict, **fields) -> dict:
    """doc with some top-level fields (or "normalizer.lowercase"-style paths) replaced."""
    doc = copy.deepcopy(doc)
    for path, value in fields.items():
        *parents, last = path.split("__")
        target = doc
        for key in parents:
            target = target[key]
        target[last] = value
    return doc


# -- exactly as tokenizers -------------------------------------------------------------------------------

@needs_tokenizers
def test_every_tweet_of_the_corpus_encodes_as_tokenizers_does():
    from training.data import tweets

    try:
        texts = tweets.load().texts
    except tweets.DataUnavailable as exc:
        pytest.skip(f"the tweets corpus is not installed: {exc}")
    assert len(texts) > 30_000
    for i in range(len(SHIPPED)):
        assert_same(shipped(i), texts)


@needs_tokenizers
@pytest.mark.parametrize("text", ["a[SEP]b", "[cls]", "[UNK]", "[SEP][SEP]", "[UNK", "x" * 100, "x" * 101, "",
                                  "ΟΔΟΣ İ", "\u200b", "\U00011938\u0301", "中文😀"])
def test_special_tokens_and_edges_as_tokenizers(trained, text):
    assert_same(trained, [text])


def test_special_tokens_are_matched_in_the_raw_text_only():
    doc = shipped(0)
    tok, v = WordPieceTokenizer(doc), doc["model"]["vocab"]
    cls, sep, unk = v["[CLS]"], v["[SEP]"], v["[UNK]"]
    assert tok.encode("a[SEP]b") == [cls, v["a"], sep, v["b"], sep]
    assert tok.encode("[UNK]") == [cls, unk, sep]
    lower = tok.encode("[cls]")  # not the token: lowercase, so split as punctuation and a word
    assert lower[:2] == [cls, v["["]] and lower[-2:] == [v["]"], sep] and cls not in lower[1:]
    assert tok.encode("x" * 101) == [cls, unk, sep]  # over max_input_chars_per_word


NORMALIZERS = [{}, {"strip_accents": True}, {"strip_accents": False}, {"lowercase": False},
               {"lowercase": False, "strip_accents": True}, {"clean_text": False}, {"handle_chinese_chars": False}]


@needs_tokenizers
@settings(max_examples=150, deadline=None)
@given(texts=st.lists(TEXTS, min_size=1, max_size=8), which=st.sampled_from(NORMALIZERS))
def test_generated_texts_encode_as_tokenizers_does(trained, texts, which):
    doc = variant(trained, **{f"normalizer__{k}": v for k, v in which.items()})
    assert_same(doc, texts)


@needs_tokenizers
@settings(max_examples=60, deadline=None)
@given(texts=st.lists(TEXTS, min_size=1, max_size=4), which=st.sampled_from([0, 1]))
def test_generated_texts_encode_as_tokenizers_does_with_the_shipped_files(texts, which):
    assert_same(shipped(which), texts)


@needs_tokenizers
@pytest.mark.parametrize("fields", [
    {"truncation__direction": "Left"}, {"truncation__strategy": "OnlyFirst"}, {"truncation__max_length": 2},
    {"truncation": None, "padding": None}, {"padding__direction": "Left"}, {"padding__pad_to_multiple_of": 8},
    {"padding__strategy": {"Fixed": 20}, "padding__pad_id": 4}, {"post_processor": None},
    {"model__continuing_subword_prefix": "@@"}, {"model__max_input_chars_per_word": 5}])
def test_settings_variants_encode_as_tokenizers_does(trained, fields):
    doc = variant(trained, **fields)
    if fields.get("model__continuing_subword_prefix"):  # the vocabulary's continuing pieces, renamed to match
        doc["model"]["vocab"] = {("@@" + t[2:] if t.startswith("##") else t): i
                                 for t, i in doc["model"]["vocab"].items()}
    texts = CORPUS[:11] + [" ".join(CORPUS)] if doc["padding"] is not None else [" ".join(CORPUS)] * 3
    assert_same(doc, texts)


@needs_tokenizers
def test_every_code_point_normalises_and_splits_as_tokenizers_does():
    """All 1.1M code points (joined by "|", which nothing normalises into), through each normaliser step on
    its own and all together, then the pre-tokenizer."""
    from tokenizers import normalizers, pre_tokenizers

    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    text = "|".join(c for c in points if c != "|")
    steps = {"clean_text": True, "handle_chinese_chars": True, "strip_accents": True, "lowercase": True}
    for on in [*steps, None]:
        flags = {k: k == on for k in steps} if on else steps
        got = BertNormalizer(**flags)(text)
        assert got == normalizers.BertNormalizer(**flags).normalize_str(text), flags
    text = "".join(points)  # all in a row: any one code point split differently changes the words
    assert words(text) == [w for w, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(text)]


@needs_tokenizers
def test_the_code_point_tables_are_what_this_tokenizers_does():
    from training import bert_chars

    assert bert_chars.main(["--check"]) == 0


def test_all_ascii_shortcut_gives_the_general_result():
    """ASCII text skips the regex passes: it must come out as it would with one non-ASCII char beside it."""
    norm = BertNormalizer()
    text = "".join(map(chr, range(128))) * 2
    assert norm(text) + "ж" == norm(text + "ж")


# -- what the service relies on --------------------------------------------------------------------------

def test_truncated_copy_keeps_the_original():
    tok = WordPieceTokenizer(shipped(0))
    short = tok.truncated(5)
    long_text = "hello world " * 40
    assert len(short.encode(long_text)) == 5 and len(tok.encode(long_text)) == 64
    assert short.word_ids is not tok.word_ids


def test_words_are_cached_with_a_bound():
    tok = WordPieceTokenizer(shipped(0))
    tok.encode("hello hello hello")
    info = tok.word_ids.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (2, 1, 1 << 14)


# -- refused at load, naming the field -------------------------------------------------------------------

@pytest.mark.parametrize("fields, field", [
    ({"model__type": "BPE"}, "model.type"),
    ({"normalizer": {"type": "Lowercase"}}, "normalizer.type"),
    ({"normalizer": None}, "normalizer.type"),
    ({"pre_tokenizer": {"type": "Whitespace"}}, "pre_tokenizer.type"),
    ({"post_processor": {"type": "RobertaProcessing"}}, "post_processor.type"),
    ({"post_processor__single": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}]},
     "post_processor.single[1]"),
    ({"post_processor__single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}]}, "post_processor.single"),
    ({"truncation__strategy": "OnlySecond"}, "truncation.strategy"),
    ({"truncation__stride": 3}, "truncation.stride"),
    ({"truncation__max_length": 1}, "truncation.max_length"),
    ({"padding__strategy": "Longest"}, "padding.strategy"),
    ({"padding__direction": "Up"}, "padding.direction"),
    ({"model__unk_token": "<unk>"}, "model.unk_token"),
])
def test_unsupported_settings_are_refused_naming_the_field(fields, field):
    with pytest.raises(ValueError, match=f"^{re.escape(field)} is "):
        WordPieceTokenizer(variant(shipped(0), **fields))


@pytest.mark.parametrize("flag", ["normalized", "single_word", "lstrip", "rstrip"])
def test_added_tokens_matched_other_than_as_they_are_are_refused(flag):
    doc = shipped(0)
    doc["added_tokens"][3][flag] = True
    with pytest.raises(ValueError, match=rf"^added_tokens\[3\]\.{flag} is True"):
        WordPieceTokenizer(doc)


@pytest.mark.parametrize("blob", [b"\xff", b"{not json", b"[1, 2]", b'{"model": {"type": "WordPiece", "vocab": '
                                  b'{"[UNK]": 0}, "unk_token": "[UNK]"}, "normalizer": {"type": "BertNormalizer"}, '
                                  b'"pre_tokenizer": {"type": "BertPreTokenizer"}, "added_tokens": [{"id": 0}]}'])
def test_a_file_that_is_not_a_tokenizer_json_is_refused(blob):
    with pytest.raises(ValueError, match="not a tokenizer.json file"):
        WordPieceTokenizer.from_json(blob)


def test_the_service_reports_the_refused_field_as_the_models_load_error():
    from service.runtime.errors import ModelLoadError
    from service.runtime.tasks.classifiers import subword_tokenizer
    from zooserve.card import load_card

    doc = shipped(0)
    card = load_card(SHIPPED[0].parent)
    blob = json.dumps(variant(doc, model__type="BPE")).encode()
    with pytest.raises(ModelLoadError, match="tokenizer.json: model.type is 'BPE'"):
        subword_tokenizer(card, {card.preprocess.tokenizer_file: blob})


def test_padding_rows_as_tokenizers_pads_them():
    from zooserve.wordpiece import Padding, pad

    ids, mask = pad([[5, 6, 7], [8]], Padding(pad_id=0, direction="Left", multiple_of=4))
    assert ids.tolist() == [[0, 5, 6, 7], [0, 0, 0, 8]] and mask.tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    assert np.array_equal(pad([[1, 2]], None)[1], [[1, 1]])
    with pytest.raises(ValueError, match="no padding"):
        pad([[1, 2], [3]], None)
