"""A plain-text corpus for the language models: find or download it, strip the Gutenberg wrapper, split it.

The default corpus is *The Mysterious Island* (Project Gutenberg #1268). Without `--corpus PATH` it is the
copy this repository carries in `data/` (public domain, byte for byte the Gutenberg file, header and
licence included), or else downloaded; either way its sha256 is checked. A file given by path is used as it
is, and the card records whether its checksum is the official one.

Processing, in order (every step is what the model cards' figures were measured on):
1. CRLF and CR become LF, as Python's text mode does, so that models see text in the form users send.
2. Keep the body: from the title line to the "End of the Project Gutenberg" marker.
3. Cut the body by position into contiguous train/validation/test parts (90/5/5), so that no test text
   leaks into training.
4. Each part becomes paragraphs: blocks separated by blank lines, with their hard-wrapped lines joined by
   one space. The character models read the paragraphs joined by "\n"; the n-gram models read one
   paragraph (chars) or one sentence (words) per line, with `<s>`/`</s>` around it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

# The segmentation rules live in zooserve.text, so that the service splits requests as training split the
# corpus; they are re-exported here for the corpus's callers.
from zooserve.text import WORD_PATTERN, char_stream, paragraphs, sentences, word_tokens  # noqa: F401
from training.data.download import DatasetUnavailable, fetch_verified

NAME = "mysterious-island"
URL = "https://www.gutenberg.org/files/1268/1268-0.txt"
SHA256 = "355bfdc3f9b5e384b1918e817dd086ce0df97f4d294c69f032fb70b95c1e737c"
TITLE_LINE = "THE MYSTERIOUS ISLAND"
END_MARKER = "End of the Project Gutenberg"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "zooserve" / NAME
# The repository's own copy (a source checkout has it; an installed package does not).
REPO_COPY = Path(__file__).resolve().parents[2] / "data" / "mysterious_island.txt"
SPLITS = ("train", "validation", "test")
CORPUS_HELP = ("UTF-8 text file (default: the repository's data/mysterious_island.txt, Gutenberg #1268, sha256-checked; "
               "downloaded when absent)")

HOW_TO_GET = (
    "The Mysterious Island corpus was not found and could not be downloaded. Either\n"
    f"  * download {URL} yourself and pass it with --corpus PATH, or\n"
    "  * pass any UTF-8 text file with --corpus PATH (with --title-line '' --end-marker '' to keep all of it)"
)


@dataclass(frozen=True)
class Corpus:
    body: str  # LF-normalised text between the title line and the end marker
    source: Path
    sha256: str  # of the file's bytes as read
    official: bool  # the file is the published Gutenberg #1268

    def split(self, train: float = 0.9, validation: float = 0.05) -> dict[str, str]:
        """Contiguous parts by character position: [0, 90%) train, [90%, 95%) validation, [95%, end) test."""
        if not (0 < train < 1 and 0 < validation < 1 - train):
            raise ValueError(f"need 0 < train < 1 and 0 < validation < 1 - train, got {train}, {validation}")
        n = len(self.body)
        a, b = int(n * train), int(n * (train + validation))
        return dict(zip(SPLITS, (self.body[:a], self.body[a:b], self.body[b:])))


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def strip_wrapper(text: str, title_line: str = TITLE_LINE, end_marker: str = END_MARKER) -> str:
    """The text from the first line equal to `title_line` up to `end_marker`; an empty marker keeps that end."""
    start = 0
    if title_line:
        m = re.search(rf"^{re.escape(title_line)}[ \t]*$", text, flags=re.MULTILINE)
        if not m:
            raise ValueError(f"the corpus has no line {title_line!r}; pass --title-line '' to start at the top")
        start = m.start()
    end = len(text)
    if end_marker:
        end = text.find(end_marker, start)
        if end < 0:
            raise ValueError(f"the corpus has no {end_marker!r} after its title; pass --end-marker '' to keep the rest")
    return text[start:end]


def load(path: str | os.PathLike | None = None, *, allow_download: bool = True, title_line: str = TITLE_LINE,
         end_marker: str = END_MARKER) -> Corpus:
    """Read `path`; without one, the repository's copy, else the cached or downloaded official file."""
    if path is None and REPO_COPY.is_file():
        if hashlib.sha256(REPO_COPY.read_bytes()).hexdigest() != SHA256:
            raise DatasetUnavailable(f"{REPO_COPY} is not the published file (sha256 differs): restore it from git, "
                                     "or pass --corpus PATH to use it as it is")
        path = REPO_COPY
    if path is None:
        if not allow_download and not (CACHE_DIR / "1268-0.txt").is_file():
            raise DatasetUnavailable(HOW_TO_GET)
        path = fetch_verified(URL, CACHE_DIR / "1268-0.txt", SHA256, how_to_get=HOW_TO_GET)
    path = Path(path)
    if not path.is_file():
        raise DatasetUnavailable(f"{path} is not a file.\n{HOW_TO_GET}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # Gutenberg files start with a byte-order mark
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc})") from exc
    digest = hashlib.sha256(raw).hexdigest()
    body = strip_wrapper(normalise_newlines(text), title_line, end_marker)
    return Corpus(body=body, source=path, sha256=digest, official=digest == SHA256)
