"""Text classification through /v1/models/{m}/classify: the service tokenises exactly as training did (it
reads tokenizer.json itself; these tests compare with `training/text_tokenizer.py`), pads each formed batch
to its longest text, counts tokens and padding, and refuses bad input with a 400 naming the field.

The small repository here is built from the card contract only: a WordPiece tokenizer trained by the
training code on a few sentences, and a masked mean-pooling classifier written with `onnx.helper`
(Gather -> multiply by the mask -> sum / count -> linear), so padding must not change its logits. The
shipped tweets-transformer (whatever version is newest) is checked the same way when it is present.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from zooserve.card import ModelCard, model_folder
from zooserve.text import SubwordTokenizer
from tests.service.conftest import OPSET, card_dict, gate_model
from training import text_tokenizer

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["negative", "neutral", "positive"]
MAX_LENGTH = 16
CORPUS = ["i love this so much", "this is terrible and i hate it", "meh, it is fine i guess",
          "what a wonderful day", "the worst service ever", "not bad at all", "Café naïve résumé",
          "loving the new update!!!", "hate hate hate", "ok"] * 5
TEXTS = ["I LOVE it", "meh", "Café naïve résumé, ça va?", "unseenword zzzqqq",
         " ".join(["wonderful"] * 40),  # longer than max_length: truncated
         "hate it 😡 #monday @someone http://x.co"]


def mean_pool_graph(vocab: int, dim: int = 8, classes: int = 3, seed: int = 0) -> onnx.ModelProto:
    """input_ids, attention_mask INT64 [B, T] -> logits FP32 [B, C]: masked mean of embeddings, then linear."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(0, 1, (vocab, dim)).astype(np.float32)
    w, b = rng.normal(0, 1, (dim, classes)).astype(np.float32), rng.normal(0, 0.1, classes).astype(np.float32)
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "T"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "T"])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", classes])
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    last = numpy_helper.from_array(np.array([-1], dtype=np.int64), "last")
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["e"]),  # (B, T, D)
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),  # (B, T)
        helper.make_node("Unsqueeze", ["m", "last"], ["m3"]),  # (B, T, 1)
        helper.make_node("Mul", ["e", "m3"], ["em"]),
        helper.make_node("ReduceSum", ["em", "axes"], ["s"], keepdims=0),  # (B, D)
        helper.make_node("ReduceSum", ["m3", "axes"], ["n"], keepdims=0),  # (B, 1)
        helper.make_node("Div", ["s", "n"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "Bias"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(emb, "E"), numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "Bias"),
             axes, last]
    graph = helper.make_graph(nodes, "text-test", [ids, mask], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def tokenizer_blob(tmp_path_factory) -> tuple[bytes, text_tokenizer.TokenizerConfig]:
    cfg = text_tokenizer.TokenizerConfig(vocab_size=120, max_length=MAX_LENGTH, min_frequency=1)
    tok = text_tokenizer.train(CORPUS, cfg)
    path = tmp_path_factory.mktemp("tok") / text_tokenizer.TOKENIZER_FILE
    tok.save(str(path))
    return path.read_bytes(), cfg


def write_text_model(root: Path, tokenizer_blob, *, name: str = "txt", max_batch_size: int = 8,
                     list_tokenizer: bool = True, tamper: bool = False) -> Path:
    blob, cfg = tokenizer_blob
    tok = text_tokenizer.Tokenizer.from_str(blob.decode())
    graph = mean_pool_graph(tok.get_vocab_size()).SerializeToString()
    io = [{"name": n, "datatype": "INT64", "shape": [-1, -1]} for n in ("input_ids", "attention_mask")]
    card = card_dict(name, 1, graph, inputs=io, outputs=[{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}],
                     max_batch_size=max_batch_size, max_delay_ms=2.0)
    card.update(task="text-classification", labels=LABELS, preprocess=text_tokenizer.preprocess_card(tok, cfg))
    if list_tokenizer:
        card["extra_files"] = [{"file": "tokenizer.json", "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}]
    ModelCard.model_validate(card)
    folder = root / name / "1"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(graph)
    (folder / "model.json").write_text(json.dumps(card))
    (folder / "tokenizer.json").write_bytes(blob.replace(b"[UNK]", b"[UNQ]", 1) if tamper else blob)
    return root


def training_rows(blob: bytes, texts: list[str]) -> list[list[int]]:
    """The ids training computes for `texts` (its own encode: padded to the longest), unpadded by its mask."""
    ids, mask = text_tokenizer.encode(text_tokenizer.Tokenizer.from_str(blob.decode()), texts)
    return [row[m.astype(bool)].tolist() for row, m in zip(ids, mask)]


def record_feeds(loaded) -> list[dict]:
    """Every batch the model is sent, kept (the real run function still runs)."""
    seen, real = [], loaded.batcher.run_fn

    def spy(feeds):
        seen.append({k: v.copy() for k, v in feeds.items()})
        return real(feeds)

    loaded.batcher.run_fn = spy
    return seen


def classify(client, texts, model="txt", **extra):
    return client.post(f"/v1/models/{model}/classify", json={"texts": texts, **extra})


# -- tokenisation ----------------------------------------------------------------------------------------

def test_service_tokenizer_gives_training_ids(tokenizer_blob):
    blob, cfg = tokenizer_blob
    tok = SubwordTokenizer(blob, max_length=cfg.max_length, special_tokens=text_tokenizer.SPECIAL_TOKENS,
                           vocab_size=120)
    got = [r.tolist() for r in tok.encode(TEXTS + CORPUS[:10])]
    assert got == training_rows(blob, TEXTS + CORPUS[:10])
    assert max(map(len, got)) == MAX_LENGTH  # the long text was truncated, [SEP] kept last
    assert all(r[0] == 2 and r[-1] == 3 for r in got)  # [CLS] ... [SEP] (ids from the training vocabulary)


def test_tokenizer_that_disagrees_with_its_card_is_refused(tokenizer_blob):
    blob, cfg = tokenizer_blob
    with pytest.raises(ValueError, match="card says vocab_size 121"):
        SubwordTokenizer(blob, max_length=cfg.max_length, special_tokens={}, vocab_size=121)
    with pytest.raises(ValueError, match="max_length 32"):
        SubwordTokenizer(blob, max_length=32, special_tokens={}, vocab_size=120)
    with pytest.raises(ValueError, match="pad"):
        SubwordTokenizer(blob, max_length=cfg.max_length, special_tokens={"pad": "<pad>"}, vocab_size=120)


def test_ids_sent_to_the_model_equal_training_ids_padded_to_the_longest_text(tmp_path, tokenizer_blob, serve):
    async def body(client, app):
        loaded = app.state.repository.get("txt")
        seen = record_feeds(loaded)
        gate, entered = gate_model(loaded)
        first = asyncio.ensure_future(classify(client, ["ok"]))  # holds the model while the others queue
        while not entered.is_set():
            await asyncio.sleep(0.005)
        second = asyncio.ensure_future(classify(client, TEXTS[:4]))
        await asyncio.sleep(0.1)
        gate.set()
        return (await first).status_code, await second, seen

    code, r, seen = serve(write_text_model(tmp_path, tokenizer_blob), body)
    assert code == 200 and r.status_code == 200, r.text
    batch = seen[-1]  # the four texts, formed into one batch while the first ran
    ids, mask = batch["input_ids"], batch["attention_mask"]
    want = training_rows(tokenizer_blob[0], TEXTS[:4])
    assert ids.shape == (4, max(map(len, want))) and ids.shape[1] < MAX_LENGTH  # the longest, not max_length
    assert [row[m.astype(bool)].tolist() for row, m in zip(ids, mask)] == want
    assert all((row[len(w):] == 0).all() for row, w in zip(ids, want))  # [PAD] = 0 after each text
    assert mask.sum(axis=1).tolist() == [len(w) for w in want]
    assert len(r.json()["predictions"]) == 4


def test_padding_does_not_change_the_answer_and_is_counted(tmp_path, tokenizer_blob, serve):
    texts = ["meh", TEXTS[4], "what a wonderful day"]

    async def body(client, app):
        alone = [(await classify(client, [t], top_k=3)).json()["predictions"][0] for t in texts]
        metrics_before = (await client.get("/metrics")).text
        together = (await classify(client, texts, top_k=3)).json()["predictions"]
        return alone, together, metrics_before, (await client.get("/metrics")).text

    alone, together, before, after = serve(write_text_model(tmp_path, tokenizer_blob), body)
    for a, t in zip(alone, together):
        assert [p["label"] for p in a] == [p["label"] for p in t]
        np.testing.assert_allclose([p["probability"] for p in a], [p["probability"] for p in t], rtol=1e-5)
    lengths = [len(r) for r in training_rows(tokenizer_blob[0], texts)]

    def counter(text, name):
        line = next(l for l in text.splitlines() if l.startswith(f'{name}{{model="txt"}}'))
        return float(line.rsplit(" ", 1)[1])

    # The three texts of one request reach an idle model together: one batch, padded to the longest.
    assert counter(after, "zooserve_tokens_total") - counter(before, "zooserve_tokens_total") == sum(lengths)
    assert (counter(after, "zooserve_padding_tokens_total") - counter(before, "zooserve_padding_tokens_total")
            == 3 * max(lengths) - sum(lengths))


def shipped_transformer(name: str = "tweets-transformer") -> Path | None:
    folder = model_folder([ROOT / "models", ROOT / "models-extra"], name)
    versions = sorted(folder.glob("*/model.json"), key=lambda p: int(p.parent.name)) if folder else []
    return versions[-1].parent if versions else None


@pytest.mark.skipif(shipped_transformer() is None, reason="models-extra/tweets-transformer is not in this checkout")
def test_shipped_tokenizer_gives_training_ids_as_its_card_says():
    from zooserve.card import load_card

    folder = shipped_transformer()
    card = load_card(folder)
    pre = card.preprocess
    blob = (folder / pre.tokenizer_file).read_bytes()
    tok = SubwordTokenizer(blob, max_length=pre.max_length, special_tokens=pre.special_tokens,
                           vocab_size=pre.vocab_size)
    texts = TEXTS + [" ".join(["supercalifragilistic"] * 200), "RT @user: can't wait!!! #happy"]
    assert [r.tolist() for r in tok.encode(texts)] == training_rows(blob, texts)
    assert max(len(r) for r in tok.encode(texts)) == pre.max_length


@pytest.mark.parametrize("name", ["tweets-transformer", "tweets-transformer-int8"])
def test_shipped_transformer_answers_the_same_padded_or_not(tmp_path, serve, name):
    """A text's answer does not depend on the texts batched with it: padding is masked, and the INT8 twin's
    activation scales are fixed (static quantization), not taken from the batch."""
    folder = shipped_transformer(name)
    if folder is None:
        pytest.skip(f"models/{name} is not in this checkout")
    (tmp_path / name).mkdir()
    (tmp_path / name / folder.name).symlink_to(folder)
    texts = ["i love it", "meh", "this is the worst day of my life, everything went wrong and i am so tired"]

    async def body(client, app):
        alone = [(await classify(client, [t], name)).json()["predictions"][0] for t in texts]
        together = await classify(client, texts, name)
        return alone, together

    alone, together = serve(tmp_path, body)
    assert together.status_code == 200, together.text
    for a, t in zip(alone, together.json()["predictions"]):
        assert [p["label"] for p in a] == [p["label"] for p in t]
        np.testing.assert_allclose([p["probability"] for p in a], [p["probability"] for p in t], atol=1e-5)


# -- the card's checksum covers tokenizer.json ------------------------------------------------------------

@pytest.mark.parametrize("kind,words", [("tamper", "sha256"), ("unlisted", "extra_files")])
def test_a_tokenizer_that_is_not_checked_or_altered_makes_the_model_unavailable(tmp_path, tokenizer_blob, serve,
                                                                                kind, words):
    root = write_text_model(tmp_path, tokenizer_blob, tamper=kind == "tamper", list_tokenizer=kind != "unlisted")

    async def body(client, app):
        return await client.get("/v2/models/txt"), await classify(client, ["ok"])

    meta, r = serve(root, body)
    assert meta.json()["state"] == "UNAVAILABLE" and words in meta.json()["reason"], meta.text
    assert r.status_code == 503


# -- bad input -----------------------------------------------------------------------------------------

BAD = [
    ({"texts": []}, '"texts" is empty'),
    ({"texts": ["ok", 3]}, "texts[1] must be a string"),
    ({"texts": ["ok"] * 9}, "at most 8 texts"),
    ({"texts": ["ok", ""]}, "texts[1] is empty"),
    ({"texts": ["   \n"]}, "texts[0] is empty"),
    ({"text": ""}, "text is empty"),
    ({"text": ["a"]}, '"text" must be a string, got ["a"]'),
    ({"texts": "ok"}, '"texts" must be a list'),
    ({"texts": ["\x00\x01"]}, "texts[0] has no tokens"),
    ({"texts": ["ok"], "text": "ok"}, "exactly one of"),
    ({"images": ["abc"]}, "exactly one of"),
    ({"texts": ["ok"], "top_k": "2"}, '"top_k" must be an integer, got "2"'),
    ({"texts": ["ok"], "top_k": 0}, '"top_k" must be at least 1, got 0'),
]


def test_bad_text_input_is_a_400_naming_the_field_and_the_server_carries_on(tmp_path, tokenizer_blob, serve):
    async def body(client, app):
        bad = [await client.post("/v1/models/txt/classify", json=doc) for doc, _ in BAD]
        bad.append(await client.post("/v1/models/txt/classify", content=b"[1, 2]"))
        return bad, await client.post("/v1/models/txt/classify", json={"text": "ok", "top_k": 2})

    bad, good = serve(write_text_model(tmp_path, tokenizer_blob), body)
    for (doc, words), r in zip(BAD, bad):
        assert r.status_code == 400 and words in r.json()["error"], (doc, r.text)
    assert bad[-1].status_code == 400 and "JSON object" in bad[-1].json()["error"]
    assert good.status_code == 200 and len(good.json()["predictions"][0]) == 2


def test_v2_infer_pads_text_requests_of_different_lengths_into_one_batch(tmp_path, tokenizer_blob, serve):
    def v2(ids):
        ids = np.asarray(ids, dtype=np.int64)[None]
        return {"inputs": [{"name": "input_ids", "shape": list(ids.shape), "datatype": "INT64", "data": ids.ravel().tolist()},
                           {"name": "attention_mask", "shape": list(ids.shape), "datatype": "INT64",
                            "data": [1] * ids.size}]}

    rows = [[2, 10, 11, 3], [2, 12, 3], [2, 13, 14, 15, 16, 3]]

    async def body(client, app):
        alone = [(await client.post("/v2/models/txt/infer", json=v2(r))).json() for r in rows]
        loaded = app.state.repository.get("txt")
        seen = record_feeds(loaded)
        gate, entered = gate_model(loaded)
        first = asyncio.ensure_future(client.post("/v2/models/txt/infer", json=v2(rows[0])))
        while not entered.is_set():
            await asyncio.sleep(0.005)
        rest = [asyncio.ensure_future(client.post("/v2/models/txt/infer", json=v2(r))) for r in rows]
        await asyncio.sleep(0.1)
        gate.set()
        await first
        together = [(await t).json() for t in rest]
        bad = v2(rows[0])
        bad["inputs"][1]["shape"], bad["inputs"][1]["data"] = [1, 3], [1, 1, 1]
        return alone, together, seen, await client.post("/v2/models/txt/infer", json=bad)

    alone, together, seen, bad = serve(write_text_model(tmp_path, tokenizer_blob), body)
    assert seen[-1]["input_ids"].shape == (3, 6)  # padded to the longest of the three requests
    for a, t in zip(alone, together):
        np.testing.assert_allclose(a["outputs"][0]["data"], t["outputs"][0]["data"], rtol=1e-5)
    assert bad.status_code == 400 and "length" in bad.json()["error"], bad.text


def _v2_ids(ids: list[int]) -> dict:
    return {"inputs": [{"name": n, "shape": [1, len(ids)], "datatype": "INT64", "data": d}
                       for n, d in (("input_ids", ids), ("attention_mask", [1] * len(ids)))]}


def test_a_token_id_past_the_vocabulary_is_a_400_and_its_batch_mates_are_answered(tmp_path, tokenizer_blob, serve):
    """One poisoned request in every ten, sent together with good ones to the same model: each poisoned one
    gets a 400 naming the field and the range, every good one a 200 (they used to fail with their batch)."""
    vocab = text_tokenizer.Tokenizer.from_str(tokenizer_blob[0].decode()).get_vocab_size()
    bad_docs = [_v2_ids([5, 99_999_999]), _v2_ids([5, -1]), _v2_ids([5] * (MAX_LENGTH + 1)),
                {"inputs": [{**_v2_ids([5])["inputs"][0]},
                            {"name": "attention_mask", "shape": [1, 1], "datatype": "INT64", "data": [7]}]}]

    async def body(client, app):
        gate, _ = gate_model(app.state.repository.get("txt"))
        docs = [bad_docs[i // 10 % len(bad_docs)] if i % 10 == 3 else _v2_ids([5, 6, 7][: 1 + i % 3])
                for i in range(60)]
        tasks = [asyncio.create_task(client.post("/v2/models/txt/infer", json=d)) for d in docs]
        await asyncio.sleep(0.05)
        gate.set()
        return docs, await asyncio.gather(*tasks)

    docs, answers = serve(write_text_model(tmp_path, tokenizer_blob), body)
    for i, (doc, r) in enumerate(zip(docs, answers)):
        if i % 10 == 3:
            assert r.status_code == 400, r.text
            message = r.json()["error"]
            assert ("from 0 to" in message and ("input_ids" in message or "attention_mask" in message)) or \
                f"at most {MAX_LENGTH} tokens" in message, message
        else:
            assert r.status_code == 200, r.text
    assert f"from 0 to {vocab - 1}, got 99999999" in answers[3].json()["error"]


@pytest.mark.parametrize("kind", ["words", "newlines", "one-long-word", "spaces-then-words", "punctuation"])
def test_a_long_text_gets_the_ids_of_the_whole_text(tokenizer_blob, kind):
    """SubwordTokenizer encodes a long text from a prefix cut at a word boundary: the ids must be exactly
    those the whole text gives (truncation keeps the first max_length tokens either way)."""
    rng = np.random.default_rng(len(kind))
    words = ["wonderful", "awful", "the", "day", "zq", "x" * 30, "ok!", "héllo", "dont"]
    if kind == "words":
        text = " ".join(rng.choice(words, 20_000))
    elif kind == "newlines":
        text = "\n".join(rng.choice(words, 20_000))
    elif kind == "one-long-word":
        text = "ab" * 50_000
    elif kind == "spaces-then-words":
        text = " " * 90_000 + " ".join(rng.choice(words, 2_000))
    else:
        text = "".join(rng.choice(list("!?.,;:-"), 50_000)) + " wonderful"
    blob, cfg = tokenizer_blob
    tok = SubwordTokenizer(blob, max_length=MAX_LENGTH, special_tokens={"pad": "[PAD]", "cls": "[CLS]", "sep": "[SEP]"},
                           vocab_size=text_tokenizer.Tokenizer.from_str(blob.decode()).get_vocab_size())
    whole = text_tokenizer.Tokenizer.from_str(blob.decode())
    whole.enable_truncation(MAX_LENGTH)
    (got,) = tok.encode([text])
    assert got.tolist() == whole.encode(text).ids
    assert len(got) == (3 if kind == "one-long-word" else MAX_LENGTH)  # one word too long for WordPiece: [UNK]
