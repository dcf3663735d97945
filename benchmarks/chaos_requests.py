"""The requests `benchmarks/chaos.py` sends: a fuzz corpus, the poison mix and the largest requests.

Everything is built from the model cards of the repository and the server's own limits (its Settings
defaults and the constants its tasks check against), so that "the largest accepted" and "just over" move
with the server. Each request is a `Call`; `Call.kind` names it in the report.
"""

from __future__ import annotations

import base64
import copy
import gzip
import io
import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.serve_bench import HOST, Body, make_bodies, raw_request
from service.runtime.tasks.classifiers import MAX_TEXT_CHARS
from service.runtime.tasks.images import MAX_PIXELS
from service.runtime.tasks.language_model import MAX_CHARS
from service.settings import Settings

IMAGE, IMAGE_BIG, TEXT, RNN, NGRAM = ("fashion-lenet", "fashion-resnet", "tweets-transformer-int8", "island-lstm",
                                      "island-ngram-word3")
DEFAULTS = Settings.model_fields  # the server's default limits (the scenarios run it with defaults)
CORPUS = Path(__file__).resolve().parents[1] / "data" / "mysterious_island.txt"
JSON_HEADERS = (("Content-Type", "application/json"),)


@dataclass(frozen=True)
class Call:
    """One HTTP request, and its name in the report."""

    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = JSON_HEADERS
    kind: str = ""

    def encode(self, port: int) -> bytes:
        if self.method == "POST":
            return raw_request(port, self.path, Body(self.body, dict(self.headers)))
        return f"GET {self.path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode("latin-1")


def post(path: str, doc, kind: str = "", headers=JSON_HEADERS) -> Call:
    """A JSON POST. json.dumps writes NaN and Infinity literals, which the fuzz corpus wants."""
    return Call("POST", path, doc if isinstance(doc, bytes) else json.dumps(doc).encode(), headers, kind)


def latest_card(repo: Path, model: str) -> dict:
    newest = max((p for p in (repo / model).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return json.loads((newest / "model.json").read_text())


def tensor(spec: dict, rows: int = 1, length: int = 1, fill=None) -> dict:
    """A V2 JSON tensor for a card input: the first -1 of its shape is the batch (`rows`; axis 1 of a
    recurrent state (layers, B, hidden)), a later one the sequence (`length`). Ints are 1 (a valid token id
    and attention mask value), floats 0."""
    dynamic = [i for i, d in enumerate(spec["shape"]) if d == -1]
    shape = [d if d != -1 else rows if i == dynamic[0] else length for i, d in enumerate(spec["shape"])]
    value = fill if fill is not None else (0.0 if spec["datatype"].startswith("FP") else 1)
    return {"name": spec["name"], "shape": shape, "datatype": spec["datatype"],
            "data": [value] * int(np.prod(shape))}


def infer_doc(card: dict, rows: int = 1, length: int = 1) -> dict:
    return {"inputs": [tensor(s, rows, length) for s in card["inputs"]]}


def infer_path(model: str) -> str:
    return f"/v2/models/{model}/infer"


def corpus_text(chars: int, start: int = 0) -> str:
    text = CORPUS.read_text(encoding="utf-8-sig")
    return (text * (1 + (start + chars) // len(text)))[start:start + chars]


# -- fuzz --------------------------------------------------------------------------------------------

def bases(cards: dict[str, dict]) -> dict[str, tuple[str, dict]]:
    """A valid request per endpoint and model kind: name -> (path, JSON document). The fuzz corpus breaks
    them one field at a time."""
    gen = {"max_tokens": 4, "temperature": 0.8, "top_k": 5, "top_p": 0.9, "seed": 1, "stop": ["\n"]}
    return {
        **{f"infer-{m}": (infer_path(m), infer_doc(cards[m])) for m in (IMAGE, TEXT, RNN, NGRAM)},
        "classify-image": (f"/v1/models/{IMAGE}/classify", {"arrays": [[[0] * 28] * 28], "top_k": 2}),
        "classify-text": (f"/v1/models/{TEXT}/classify", {"texts": ["what a lovely day"], "top_k": 1}),
        "score-rnn": (f"/v1/models/{RNN}/score", {"text": "The engineer looked at the sea."}),
        "score-ngram": (f"/v1/models/{NGRAM}/score", {"text": "The engineer looked at the sea."}),
        "generate": (f"/v2/models/{RNN}/generate", {"text_input": "The engineer", "parameters": gen}),
        "generate_stream": (f"/v2/models/{NGRAM}/generate_stream", {"text_input": "The engineer", "parameters": gen}),
        "completions": ("/v1/completions", {"model": RNN, "prompt": "The engineer", **gen, "stream": False}),
    }


BAD_JSON = [b"", b"{", b"null", b"[]", b'"text"', b"\xff\xfe\x00", b"[" * 100_000, b'{"inputs": NaN}', b"1e400",
            b'{"inputs": [1, 2,']
HOSTILE = [None, True, False, 0, -1, 1.5, 2**63, -(2**63) - 1, 10**30, 1e308, -1e308, float("nan"), float("inf"), "",
           "NaN", "x" * 10_000, "\u0000", "\ud800", [], [[]], [None], [True, False], {}, {"": None}, ["x"] * 1000]


def edited(doc: dict, where: tuple, value) -> dict:
    """A deep copy of `doc` with the item at key path `where` set to `value` (added if the key is new)."""
    out = copy.deepcopy(doc)
    node = out
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    return out


def field_cases(cards: dict[str, dict]) -> list[tuple[str, tuple, object]]:
    """(base, key path, value): wrong types, huge numbers, NaN-ish values, booleans as numbers, bad shapes,
    oversized fields, values past a vocabulary or a card's limits."""
    text_len, vocab = cards[TEXT]["preprocess"]["max_length"], cards[TEXT]["preprocess"]["vocab_size"]
    seq, prompt = DEFAULTS["max_sequence_tokens"].default, DEFAULTS["generation_max_prompt_chars"].default
    i0, d0 = ("inputs", 0), ("inputs", 0, "data")
    image = [(i0 + ("name",), v) for v in ("nope", None)] + \
        [(i0 + ("datatype",), v) for v in ("FP64", "BOOL", "BYTES", 7)] + \
        [(i0 + ("shape",), v) for v in ([-1, 1, 28, 28], [2**62, 2**62], [1, 1, 28, 29], [True, 1, 28, 28],
                                         [0, 1, 28, 28], "1x1", [1.0, 1, 28, 28])] + \
        [(d0, v) for v in (["a"] * 784, [True] * 784, [1e39] * 784, [None] * 784, "NaN", [[1, 2], [3]], [])] + \
        [(d0 + (0,), v) for v in (float("nan"), float("inf"), 10**400, "1")] + \
        [(("inputs",), v) for v in ("x", [], [1], [{}])] + \
        [(("parameters",), [1]), (("outputs",), [{"name": "nope"}]), (("outputs",), "x")] + \
        [(("outputs",), [{"name": "logits", "parameters": {"classification": k}}]) for k in (0, -1, "3", True, 1.5)] + \
        [(i0 + ("parameters",), {"binary_data_size": 10})]
    text = [(d0, [vocab]), (d0, [-1]), (("inputs", 1, "data"), [7]), (d0, [1.5]),
            (i0, tensor(cards[TEXT]["inputs"][0], length=text_len + 1)), (i0 + ("datatype",), "INT32")]
    rnn = [(d0, [cards[RNN]["preprocess"]["vocab_size"]]), (d0, [-5]), (("inputs", 1, "data", 0), float("nan")),
           (("inputs", 1, "shape"), [1, 2, 512]), (i0, tensor(cards[RNN]["inputs"][0], length=seq + 1))]
    ngram = [(d0, [cards[NGRAM]["preprocess"]["vocab_size"], 1]), (i0 + ("shape",), [1, 3])]
    classify_image = [(("arrays",), v) for v in ("x", [[[0] * 27] * 28], [[["a"] * 28] * 28], [[[1e39] * 28] * 28],
                                                 [[[True] * 28] * 28], [[[float("nan")] * 28] * 28])] + \
        [(("images",), v) for v in (["not base64!!"], [base64.b64encode(b"hello").decode()], [123],
                                    [base64.b64encode(png(64, 64)[:100]).decode()])] + \
        [(("top_k",), v) for v in (0, -1, "3", True, 10**30, 1.5)] + [(("texts",), ["hi"])]
    classify_text = [(("texts",), v) for v in ([], [""], [1], "text", ["x" * (MAX_TEXT_CHARS + 1)],
                                               ["hi"] * (cards[TEXT]["batching"]["max_batch_size"] + 1),
                                               ["\u0000\u0001"])] + [(("arrays",), [[[0] * 28] * 28])]
    score = [(("text",), v) for v in (None, 123, "", " ", ["a"], "x" * (MAX_CHARS + 1))]
    p = ("parameters",)
    generate = [(("text_input",), v) for v in (None, "", "x" * (prompt + 1), 5)] + [(p, [1])] + [
        (p + (name,), v) for name, values in {
            "max_tokens": (0, DEFAULTS["generation_max_tokens"].default + 1, 1.5, "10", True, 2**70),
            "temperature": (-1, 1e308, "hot", float("nan")), "top_p": (2, -0.1), "top_k": (-1, 1.5),
            "stop": (["a"] * (DEFAULTS["generation_max_stop"].default + 1), "x" * 101, [""], [1]),
            "seed": ("abc", -1, 2**70), "logprobs": (100, -1), "bogus": (1,), "repetition_penalty": (0, -2)}.items()
        for v in values]
    completions = [((name,), v) for name, values in {
        "model": (None, 123, "nope", IMAGE), "n": (2,), "echo": (True,), "stream": ("yes",), "stream_options": ([],),
        "prompt": (["a", "b"], [1, 2, 3]), "max_tokens": (-1,), "logit_bias": ({"1": 5},)}.items() for v in values]
    return [(base, where, value) for base, cases in (
        (f"infer-{IMAGE}", image), (f"infer-{TEXT}", text), (f"infer-{RNN}", rnn), (f"infer-{NGRAM}", ngram),
        ("classify-image", classify_image), ("classify-text", classify_text), ("score-rnn", score),
        ("score-ngram", score), ("generate", generate), ("completions", completions)) for where, value in cases]


def other_cases(cards: dict[str, dict]) -> list[Call]:
    """Unknown models and versions, wrong methods, repository control (off by default), bad encodings and
    binary headers, broken multipart, an oversized body and a gzip bomb."""
    image = json.dumps(infer_doc(cards[IMAGE])).encode()
    limit = DEFAULTS["max_body_bytes"].default
    lenet = infer_path(IMAGE)
    gets = [f"/v2/models/{p}" for p in ("nope", "nope/ready", f"{IMAGE}/versions/99", f"{IMAGE}/versions/abc",
                                        f"{IMAGE}/versions/-1/ready", "x" * 5000, f"{IMAGE}/infer")]
    posts = [("/v2/models/nope/infer", image), (f"/v2/models/{IMAGE}/versions/99/infer", image),
             (f"/v2/models/{IMAGE}/versions/abc/infer", image), ("/v1/models/nope/classify", b'{"texts": ["a"]}'),
             ("/v1/models/nope/score", b'{"text": "a"}'), ("/v2/models/nope/generate", b'{"text_input": "a"}'),
             (f"/v1/models/{IMAGE}/score", b'{"text": "a"}'), (f"/v2/models/{TEXT}/generate", b'{"text_input": "a"}'),
             (f"/v1/models/{RNN}/classify", b'{"texts": ["a"]}'), (f"/v2/repository/models/{IMAGE}/unload", b""),
             (f"/v2/repository/models/{IMAGE}/load", b""), ("/v2/repository/models/nope/load", b""),
             ("/v2/repository/index", b"[1]"), (f"/v1/models/{IMAGE}/classify?top_k=abc", b'{"arrays": []}'),
             ("/v2/health/ready", b"")]
    binary = make_bodies("input", np.zeros((1, 1, 28, 28), np.float32))["binary"]
    header_length = {"Content-Type": "application/octet-stream"}
    with_headers = [
        (image, {"Content-Encoding": "gzip"}), (image, {"Content-Encoding": "br"}),
        (gzip.compress(b"0" * (limit + 1)), {"Content-Encoding": "gzip"}),  # 32 KB that inflate past the limit
        (gzip.compress(image)[:-20], {"Content-Encoding": "gzip"}),
        *((binary.content, {**header_length, "Inference-Header-Content-Length": n}) for n in ("abc", "-5", "99999999", "0")),
        (binary.content[:-4], binary.headers), (b" " * (limit + 1), {}),
    ]
    multipart = [(b"--b\r\nContent-Disposition: form-data; name=\"files\"\r\n\r\nnot a file\r\n--b--\r\n",
                  {"Content-Type": "multipart/form-data; boundary=b"}),
                 (b"--b\r\n\r\n--b--\r\n", {"Content-Type": "multipart/form-data; boundary=b"}),
                 (b"junk", {"Content-Type": "multipart/form-data"})]
    return [Call("GET", p, kind=f"GET {p[:60]}") for p in gets] + \
        [post(p, b, f"POST {p}") for p, b in posts] + \
        [Call("POST", lenet, b, tuple(h.items()), f"infer-{IMAGE} {sorted(h.items())} {len(b)} bytes"[:120])
         for b, h in with_headers] + \
        [Call("POST", f"/v1/models/{IMAGE}/classify", b, tuple(h.items()), f"classify multipart {b[:20]!r}")
         for b, h in multipart]


def mutated(rng: random.Random, path: str, doc: dict, name: str) -> Call:
    """One random break of a valid document: a field replaced by a hostile value or deleted, or the JSON
    text truncated or with a byte overwritten."""
    where, node = (), doc
    while isinstance(node, (dict, list)) and node and (not where or rng.random() < 0.6):
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        where, node = where + (key,), node[key]
    how = rng.choice(["replace", "replace", "replace", "delete", "truncate", "byte"])
    if how == "replace" or (how == "delete" and not where):
        value = rng.choice(HOSTILE)
        return post(path, edited(doc, where, value) if where else value, f"{name} random {where}={str(value)[:20]}")
    if how == "delete":
        out = copy.deepcopy(doc)
        parent = out
        for key in where[:-1]:
            parent = parent[key]
        del parent[where[-1]]
        return post(path, out, f"{name} random delete {where}")
    text = bytearray(json.dumps(doc).encode())
    at = rng.randrange(len(text))
    if how == "truncate":
        return post(path, bytes(text[:at]), f"{name} random truncated at {at}")
    text[at] = rng.randrange(256)
    return post(path, bytes(text), f"{name} random byte {at}={text[at]}")


def fuzz_calls(cards: dict[str, dict], random_count: int, seed: int = 0) -> tuple[list[Call], list[Call]]:
    """Hand-made cases (bad JSON on every POST endpoint, each field case, the rest), and `random_count`
    random breaks of the valid bases (which may leave a valid request: a deleted optional field)."""
    docs = bases(cards)
    hand = [post(path, body, f"{name} bad JSON {body[:12]!r}") for name, (path, _) in docs.items() for body in BAD_JSON]
    hand += [post(docs[base][0], edited(docs[base][1], where, value), f"{base} {where}={str(value)[:20]}")
             for base, where, value in field_cases(cards)]
    hand += other_cases(cards)
    rng = random.Random(seed)
    names = list(docs)
    return hand, [mutated(rng, *docs[name], name) for name in (rng.choice(names) for _ in range(random_count))]


# -- poison ------------------------------------------------------------------------------------------

def poison_calls(cards: dict[str, dict], count: int, seed: int = 0) -> list[Call]:
    """`count` requests: good ones (V2 infer and /classify on the Transformer, V2 infer on LeNet in JSON and
    binary) with a malformed but parseable one in every ten, cycling through four kinds of poison."""
    rng = np.random.default_rng(seed)
    pre = cards[TEXT]["preprocess"]
    ids, mask = cards[TEXT]["inputs"]  # input_ids, attention_mask

    def text_infer(tokens: list[int], mask_value: int = 1) -> dict:
        return {"inputs": [{**tensor(ids, length=len(tokens)), "data": tokens},
                           tensor(mask, length=len(tokens), fill=mask_value)]}

    x = rng.normal(size=(1, 1, 28, 28)).astype(np.float32)
    nan = x.copy()
    nan[0, 0, 14, 14] = np.nan
    image, poisoned = make_bodies("input", x), make_bodies("input", nan)["binary"]
    good = [post(infer_path(TEXT), text_infer(rng.integers(1000, pre["vocab_size"], n).tolist()), "good")
            for n in (5, 17, 64)]
    good += [post(f"/v1/models/{TEXT}/classify", {"texts": [t]}, "good") for t in ("I love this!", "worst day ever")]
    good += [Call("POST", infer_path(IMAGE), b.content, tuple(b.headers.items()), "good") for b in image.values()]
    bad = [post(infer_path(TEXT), text_infer([101, pre["vocab_size"], 102]), "bad: token id past the vocabulary"),
           post(infer_path(TEXT), text_infer([101] * (pre["max_length"] + 1)), "bad: sequence too long"),
           post(infer_path(TEXT), text_infer([101, 2023, 102], mask_value=7), "bad: attention mask 7"),
           Call("POST", infer_path(IMAGE), poisoned.content, tuple(poisoned.headers.items()), "bad: NaN in binary FP32")]
    goods, bads = itertools.cycle(good), itertools.cycle(bad)
    return [next(bads) if i % 10 == 9 else next(goods) for i in range(count)]


# -- large requests ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Large:
    """The largest request of a kind the defaults accept (`expect` 200), or one just over (a 4xx); and the
    small request to the same model that is timed while it runs."""

    call: Call
    probe: Call
    expect: int = 200


def png(width: int, height: int) -> bytes:
    """An RGB PNG of diagonal gradients: decodes to width x height x 3 bytes, compresses to ~1% of that
    (so that max_batch_size of them near the pixel limit fit the body limit)."""
    from PIL import Image

    g = (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.stack([g, g[::-1], np.flipud(g)], -1), "RGB").save(buf, "PNG")
    return buf.getvalue()


def large_cases(cards: dict[str, dict], dry: bool) -> list[Large]:
    """Per endpoint and model kind: the largest accepted request, then the ones just over each limit.
    A dry run sends 4 images and 4 texts where the real run sends max_batch_size."""
    seq = DEFAULTS["max_sequence_tokens"].default
    tokens, prompt = DEFAULTS["generation_max_tokens"].default, DEFAULTS["generation_max_prompt_chars"].default
    batch = {m: cards[m]["batching"]["max_batch_size"] for m in cards}
    text_len = cards[TEXT]["preprocess"]["max_length"]
    side = int(MAX_PIXELS ** 0.5)
    big_png = base64.b64encode(png(side, side)).decode()
    images, texts = (4, 4) if dry else (batch[IMAGE_BIG], batch[TEXT])
    probes = {m: post(infer_path(m), infer_doc(cards[m]), "probe") for m in cards}
    cases = []

    def add(model: str, path: str, doc, kind: str, expect: int = 200, probe: Call | None = None) -> None:
        cases.append(Large(post(path, doc, kind), probe or probes[model], expect))

    for model, length, over in ((IMAGE_BIG, 1, "rows"), (NGRAM, 1, "rows"), (TEXT, text_len, "tokens"),
                                (RNN, seq, "tokens")):
        rows = 1 if model == RNN else batch[model]  # a recurrent model's cost is its sequence, one row is enough
        add(model, infer_path(model), infer_doc(cards[model], rows, length),
            f"V2 infer {model}: {rows} rows" + (f" x {length} tokens" if over == "tokens" else ""))
        more = (rows + 1, length) if over == "rows" else (rows, length + 1)
        add(model, infer_path(model), infer_doc(cards[model], *more), f"V2 infer {model}: {over} + 1", 400)
    classify = f"/v1/models/{IMAGE_BIG}/classify"
    add(IMAGE_BIG, classify, {"images": [big_png] * images}, f"/classify {IMAGE_BIG}: {images} PNG {side}x{side} RGB")
    add(IMAGE_BIG, classify, {"images": [big_png] * (batch[IMAGE_BIG] + 1)},
        f"/classify {IMAGE_BIG}: {batch[IMAGE_BIG] + 1} PNG {side}x{side}", 400)
    add(IMAGE_BIG, classify, {"images": [base64.b64encode(png(side + 1, side)).decode()]},
        f"/classify {IMAGE_BIG}: one PNG {side + 1}x{side}", 400)
    classify = f"/v1/models/{TEXT}/classify"
    add(TEXT, classify, {"texts": [corpus_text(MAX_TEXT_CHARS, i * 5000) for i in range(texts)]},
        f"/classify {TEXT}: {texts} texts of {MAX_TEXT_CHARS} chars")
    add(TEXT, classify, {"texts": ["a"] * (batch[TEXT] + 1)}, f"/classify {TEXT}: {batch[TEXT] + 1} texts", 400)
    add(TEXT, classify, {"texts": [corpus_text(MAX_TEXT_CHARS + 1)]}, f"/classify {TEXT}: {MAX_TEXT_CHARS + 1} chars", 400)
    for model in (RNN, NGRAM):
        add(model, f"/v1/models/{model}/score", {"text": corpus_text(MAX_CHARS)}, f"/score {model}: {MAX_CHARS} chars")
        add(model, f"/v1/models/{model}/score", {"text": corpus_text(MAX_CHARS + 1)},
            f"/score {model}: {MAX_CHARS + 1} chars", 400)
    for model in (RNN, NGRAM):
        path, small = f"/v2/models/{model}/generate", post(f"/v2/models/{model}/generate",
                                                            {"text_input": "The", "parameters": {"max_tokens": 1}})
        for chars, n, expect in ((prompt, tokens, 200), (prompt, tokens + 1, 400), (prompt + 1, tokens, 400)):
            add(model, path, {"text_input": corpus_text(chars), "parameters": {"max_tokens": n, "seed": 1}},
                f"generate {model}: {chars}-char prompt, max_tokens {n}", expect, small)
    add(IMAGE_BIG, infer_path(IMAGE_BIG), b" " * (DEFAULTS["max_body_bytes"].default + 1),
        "any POST: body of max_body_bytes + 1", 413)
    return cases
