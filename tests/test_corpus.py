"""The text corpus: newline normalisation, the Gutenberg wrapper, contiguous splits, paragraphs and
sentences, vocabularies, and a download that is verified and fails clearly offline."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from training.data import corpus as C
from training.data.download import DatasetUnavailable
from training.data.vocab import Vocab, char_vocab, word_vocab
from training.tasks import language_model as task


def test_crlf_becomes_lf_and_the_wrapper_is_stripped(fake_corpus):
    c = C.load(fake_corpus)
    assert "\r" not in c.body
    assert c.body.startswith("THE MYSTERIOUS ISLAND\n")
    assert "Project Gutenberg" not in c.body and "START" not in c.body
    assert not c.official  # not the real book's checksum
    assert len(c.sha256) == 64


def test_missing_markers_are_clear_errors_and_can_be_switched_off(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("Just some text.\n\nAnother paragraph.\n")
    with pytest.raises(ValueError, match="--title-line ''"):
        C.load(path)
    with pytest.raises(ValueError, match="--end-marker ''"):
        C.load(path, title_line="")
    assert C.load(path, title_line="", end_marker="").body == "Just some text.\n\nAnother paragraph.\n"


def test_splits_are_contiguous_and_cover_the_body(fake_corpus):
    c = C.load(fake_corpus)
    parts = c.split()
    assert "".join(parts[s] for s in C.SPLITS) == c.body
    n = len(c.body)
    assert len(parts["train"]) == int(0.9 * n) and len(parts["validation"]) == int(0.95 * n) - int(0.9 * n)


def test_paragraphs_unwrap_hard_wrapped_lines():
    text = "One line\nwrapped here.\n\n\nSecond  para\n  indented.\n"
    assert C.paragraphs(text) == ["One line wrapped here.", "Second para indented."]
    assert C.char_stream(text) == "One line wrapped here.\nSecond para indented.\n"


def test_word_tokens_and_sentences():
    assert C.word_tokens("Don't stop, Mr. Smith!") == ["don't", "stop", ",", "mr", ".", "smith", "!"]
    assert C.sentences('He said "Go!" Then left.\n\nNew para') == [
        ["he", "said", '"', "go", "!", '"'], ["then", "left", "."], ["new", "para"]]


def test_vocabularies_round_trip_and_map_unseen_to_unk(tmp_path):
    v = char_vocab("abca\n")
    assert v.tokens == ("\n", "a", "b", "c", "<unk>")
    assert v.encode("abz").tolist() == [1, 2, 4]
    nb = char_vocab("ab\nb", boundaries=True)
    assert "\n" not in nb.tokens and (nb.bos, nb.eos, nb.eos_text) == ("<s>", "</s>", "\n")
    w = word_vocab([["b", "a", "b"], ["c"]], min_count=2)
    assert w.tokens == ("<unk>", "<s>", "</s>", "b") and w.encode(["a", "b"]).tolist() == [0, 3]
    assert Vocab.load(w.save(tmp_path / "vocab.json")) == w
    with pytest.raises(ValueError, match="min_count"):
        word_vocab([["a"]], min_count=0)


def test_prepare_scores_one_end_of_line_per_paragraph(fake_corpus):
    data = task.prepare(fake_corpus, unit="char")
    test_text = C.load(fake_corpus).split()["test"]
    assert data.dataset["splits"]["test"] == len(C.char_stream(test_text))
    assert data.vocab.decode(data.stream("test")) == list(C.char_stream(test_text))
    words = task.prepare(fake_corpus, unit="word")
    assert words.dataset["splits"]["test"] == sum(len(s) + 1 for s in C.sentences(test_text))


def test_download_offline_says_how_to_get_the_corpus(monkeypatch, tmp_path):
    monkeypatch.setattr(C, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(C, "REPO_COPY", tmp_path / "absent.txt")  # as in an installed package

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetUnavailable, match="--corpus PATH"):
        C.load()
    with pytest.raises(DatasetUnavailable, match="--corpus PATH"):
        C.load(allow_download=False)


def test_download_with_a_wrong_checksum_keeps_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(C, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(C, "REPO_COPY", tmp_path / "absent.txt")

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b"not the book"

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Response())
    with pytest.raises(DatasetUnavailable, match="checksum mismatch"):
        C.load()
    assert list(tmp_path.iterdir()) == []


def test_the_repository_copy_is_the_published_file_and_the_default():
    assert C.REPO_COPY.is_file()  # a source checkout carries it: the card-reproduction tests never skip
    corpus = C.load()
    assert corpus.source == C.REPO_COPY and corpus.official and corpus.sha256 == C.SHA256


def test_a_changed_repository_copy_is_refused(monkeypatch, tmp_path):
    changed = tmp_path / "mysterious_island.txt"
    changed.write_bytes(C.REPO_COPY.read_bytes().replace(b"Cyrus", b"Cyril"))
    monkeypatch.setattr(C, "REPO_COPY", changed)
    with pytest.raises(DatasetUnavailable, match="not the published file"):
        C.load()
