"""The states after whole prompts, so a prompt sent again skips its prefill.

A recurrent model's state after reading a prompt is small (layers x hidden per state input: 4 KB for
island-lstm's h and c) and fully describes what the model read, so a prompt that comes again (a playground
user sampling the same prompt, n completions, retries, a shared opening line) needs no graph call: its
state and its first token's logits come from here, and sampling proceeds as usual with the request's own
seed. Entries are keyed by a 128-bit digest of the prompt's token ids (not the text: two texts that encode
alike share an entry), and the least recently used is dropped beyond `capacity`. Only whole prompts are
matched; a prompt that extends a cached one is read from the start.

Float graphs give a row the same state whatever rows share its prefill (tests/service/test_scheduler.py),
so a cached state is the one a new prefill would compute, bit for bit. Dynamically quantised (INT8) graphs
scale each call's activations by the batch's range, so their states already depend on who shared the call
(docs/generation.md); a cached one is that of the call that first read the prompt.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np

from service import metrics

Entry = tuple[Any, np.ndarray]  # (state, logits (V,) float32 of the first token)


class PromptCache:
    """Used by one generation worker thread only (no lock)."""

    def __init__(self, capacity: int, model: str):
        self.capacity = capacity
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self._hits = metrics.PROMPT_CACHE.labels(model, "hit")
        self._misses = metrics.PROMPT_CACHE.labels(model, "miss")

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(ids: np.ndarray) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(ids, np.int64).tobytes(), digest_size=16).digest()

    def get(self, key: bytes) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: bytes, entry: Entry) -> Entry:
        """Keep `entry` (its arrays must not be views of larger ones: they stay alive as long as it does)."""
        if self.capacity:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return entry

    def count(self, hits: int, misses: int) -> None:
        """One prefill's prompts: `hits` came without the graph reading them (from here, or an identical
        prompt in the same call), `misses` the graph read."""
        if hits:
            self._hits.inc(hits)
        if misses:
            self._misses.inc(misses)
