"""Token vocabularies for the language models, saved as `vocab.json` beside each model.

The JSON says everything the service needs to tokenise without `training/`: the tokens in id order, the
special tokens, whether to lowercase, and (for words) the regular expression that splits text.

    char: the sorted characters of the training split, then `<unk>` (plus `<s>`, `</s>` for n-grams,
          where `</s>` stands for the end of a paragraph, i.e. the "\n" the neural models predict)
    word: `<unk>`, `<s>`, `</s>`, then words and punctuation seen at least `min_count` times, most
          frequent first (ties alphabetical)
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

# The Vocab class itself lives in zooserve.text, which the service reads vocab.json with.
from zooserve.text import BOS, EOS, UNK, WORD_PATTERN, Vocab


def char_vocab(train_text: str, *, boundaries: bool = False) -> Vocab:
    """Sorted characters of the training text. With `boundaries`, "\n" becomes `</s>` and `<s>` is added."""
    chars = sorted(set(train_text) - ({"\n"} if boundaries else set()))
    if boundaries:
        return Vocab("char", tuple(chars) + (UNK, BOS, EOS), bos=BOS, eos=EOS, eos_text="\n")
    return Vocab("char", tuple(chars) + (UNK,))


def word_vocab(sentences: Iterable[list[str]], *, min_count: int = 1) -> Vocab:
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    counts = Counter(tok for sent in sentences for tok in sent)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return Vocab("word", (UNK, BOS, EOS, *words), bos=BOS, eos=EOS, eos_text="\n", lowercase=True,
                 pattern=WORD_PATTERN)
