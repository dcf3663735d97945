"""Write `zooserve/bert_chars.py`: the character classes of Hugging Face `tokenizers`' BertNormalizer and
BertPreTokenizer, found by asking the installed `tokenizers` about every code point.

    python -m training.bert_chars            # rewrite zooserve/bert_chars.py
    python -m training.bert_chars --check    # exit 1 if the file is not what this `tokenizers` does
    python -m training.bert_chars --dry-run  # print what was found, write nothing

Why probe rather than use Python's `unicodedata`: `tokenizers` takes "control", "punctuation" and
"nonspacing mark" from the `unicode_categories` crate (an old Unicode; unassigned code points are not
"control" for it), whitespace and lowercase from Rust's std, and NFD from the `unicode-normalization` crate.
Python's tables are another Unicode version (14.0 on 3.11), and differ on about 1,000 code points; the
serving side must not depend on which Python runs it. Each probe normalises all code points in one call,
joined by "|" (a starter that no code point lowercases, decomposes or normalises into).
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from pathlib import Path

from tokenizers import __version__ as TOKENIZERS_VERSION
from tokenizers import normalizers, pre_tokenizers

TARGET = Path(__file__).resolve().parents[1] / "zooserve" / "bert_chars.py"
SEP = "|"
SURROGATES = range(0xD800, 0xE000)  # no Rust `char` is one: a Python string's lone surrogate is "other" (Cs)
CHARS = [chr(c) for c in range(0x110000) if c not in SURROGATES and chr(c) != SEP]


def per_char(normalizer) -> list[str]:
    """What `normalizer` makes of each of CHARS on its own."""
    out = normalizer.normalize_str(SEP.join(CHARS)).split(SEP)
    assert len(out) == len(CHARS), "a code point normalised into the separator"
    return out


def bert(clean=False, chinese=False, strip=False, lower=False) -> normalizers.BertNormalizer:
    return normalizers.BertNormalizer(clean_text=clean, handle_chinese_chars=chinese, strip_accents=strip,
                                      lowercase=lower)


def split_classes() -> tuple[set[int], set[int]]:
    """(whitespace, punctuation) of BertPreTokenizer: a whitespace char is in no piece, a punctuation char is a
    piece of its own. Every char sits between two "a"s, so the others join a longer piece."""
    pieces = pre_tokenizers.BertPreTokenizer().pre_tokenize_str("a".join(CHARS))
    covered, punct = set(), set()
    for piece, (start, end) in pieces:
        covered.update(range(start, end))
        if len(piece) == 1 and start % 2 == 0 and piece != "a":
            punct.add(ord(piece))
    spaces = {ord(c) for i, c in enumerate(CHARS) if 2 * i not in covered}
    return spaces, punct | {ord(SEP)}  # "|" is ASCII punctuation


def probe() -> dict:
    cleaned, cjk_split = per_char(bert(clean=True)), per_char(bert(chinese=True))
    stripped, lowered = per_char(bert(strip=True)), per_char(bert(lower=True))
    other, cjk, marks, nfd_kept, lower = set(SURROGATES), set(), set(), set(), {}
    for c, cl, ch, st, lo in zip(CHARS, cleaned, cjk_split, stripped, lowered):
        if cl == "":
            other.add(ord(c))
        if ch != c:
            assert ch == f" {c} ", (c, ch)
            cjk.add(ord(c))
        if lo != c:
            lower[ord(c)] = lo
        if st == "" and unicodedata.normalize("NFD", c) == c:
            marks.add(ord(c))
    for c, st in zip(CHARS, stripped):  # NFD: Python's, except where the Rust crate does not decompose
        python = "".join(x for x in unicodedata.normalize("NFD", c) if ord(x) not in marks)
        if st != python:
            assert st == c, f"U+{ord(c):04X}: tokenizers strips it to {st!r}, Python's NFD gives {python!r}"
            nfd_kept.add(ord(c))
    spaces, punct = split_classes()
    assert all(lower[c] == lower[c][0] or c == 0x130 for c in lower), "a new multi-char lowercase"
    other -= {0, 0xFFFD}  # removed by clean_text too, but by name in its source: kept out of "other"
    return {"OTHER": ranges(other), "WHITESPACE": ranges(spaces), "PUNCTUATION": ranges(punct),
            "NONSPACING_MARKS": ranges(marks), "CJK": ranges(cjk), "NFD_KEPT": ranges(nfd_kept),
            "LOWER": runs({c: v for c, v in lower.items() if len(v) == 1}),
            "LOWER_LONG": {c: v for c, v in lower.items() if len(v) > 1}}


def ranges(points: set[int]) -> list[tuple[int, int]]:
    """Sorted code points -> [(first, last), ...] of consecutive runs."""
    out: list[list[int]] = []
    for c in sorted(points):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return [tuple(r) for r in out]


def runs(mapping: dict[int, str]) -> list[tuple[int, int, int, int]]:
    """{upper: lower char} -> [(first, last, step, delta), ...]: every step-th code point from first to last
    lowercases to itself + delta (A-Z: step 1, delta 32; most of Latin Extended-A: step 2, delta 1)."""
    out: list[list[int]] = []  # [first, last, step, delta]
    for c in sorted(mapping):
        delta, run = ord(mapping[c]) - c, out[-1] if out else None
        if run and run[3] == delta and run[0] == run[1] and c - run[1] in (1, 2):
            run[1], run[2] = c, c - run[1]  # a run's second point sets its step
        elif run and run[3] == delta and c - run[1] == run[2]:
            run[1] = c
        else:
            out.append([c, c, 1, delta])
    return [tuple(r) for r in out]


def source(tables: dict) -> str:
    def rows(items, per_line):
        items = list(items)
        return "".join("    " + " ".join(items[i:i + per_line]) + "\n" for i in range(0, len(items), per_line))

    def hexes(t):
        return "(" + ", ".join(f"0x{x:X}" if i < 2 else str(x) for i, x in enumerate(t)) + "),"

    out = [f'"""Generated by `python -m training.bert_chars` from tokenizers {TOKENIZERS_VERSION}: do not edit.\n\n'
           "Code point classes as Hugging Face `tokenizers` uses them in BertNormalizer and BertPreTokenizer (see\n"
           'that script for why they are not Python\'s `unicodedata`). Ranges are (first, last), both included."""\n\n',
           f'TOKENIZERS_VERSION = "{TOKENIZERS_VERSION}"\n']
    notes = {"OTHER": "clean_text removes these (and U+0000, U+FFFD): Cc, Cf, Co, Cs of an old Unicode",
             "WHITESPACE": "Rust's char::is_whitespace: words split there; clean_text makes them spaces",
             "PUNCTUATION": "BertPreTokenizer isolates these: ASCII punctuation and Unicode P* of an old Unicode",
             "NONSPACING_MARKS": "strip_accents removes these after NFD: Mn of an old Unicode",
             "CJK": "handle_chinese_chars puts spaces around these",
             "NFD_KEPT": "Python's NFD decomposes these, tokenizers' does not",
             "LOWER": "lowercase, (first, last, step, delta): every step-th code point maps to itself + delta"}
    for name, note in notes.items():
        out.append(f"\n# {note}\n{name} = (\n{rows(map(hexes, tables[name]), 4 if name == 'LOWER' else 5)})\n")
    long = ", ".join(f"0x{c:X}: {v!a}" for c, v in sorted(tables["LOWER_LONG"].items()))
    out.append(f"# lowercase to more than one code point\nLOWER_LONG = {{{long}}}\n")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help=f"exit 1 if {TARGET.name} differs from the probe")
    mode.add_argument("--dry-run", action="store_true", help="print the table sizes, write nothing")
    args = p.parse_args(argv)
    tables = probe()
    text = source(tables)
    if args.dry_run:
        for name, rows in tables.items():
            print(f"{name}: {len(rows)} rows")
        return 0
    if args.check:
        same = TARGET.exists() and TARGET.read_text(encoding="utf-8") == text
        print(f"{TARGET}: {'up to date' if same else 'differs from tokenizers ' + TOKENIZERS_VERSION}")
        return 0 if same else 1
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
