"""Several tokens per graph call (a recurrent model's steps graph, training/export/lm_steps.py): the server
gives the same tokens, text and log-probabilities with it as without it, alone and in a crowd, and uses it
only for batches whose rows all sample by the plain rule."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from service.runtime.generation import sampling
from service.runtime.generation.batch import Batch
from service.runtime.generation.sequence import Sequence
from zooserve.card import load_card, save_card

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("island-lstm", "island-lstm-int8", "island-gru")


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> tuple[Path, Path]:
    """(the shipped models, the same models with their steps graph taken off the card)."""
    with_steps, without = tmp_path_factory.mktemp("with-steps"), tmp_path_factory.mktemp("without-steps")
    for name in MODELS:
        (with_steps / name).symlink_to(ROOT / "models" / name)
        src, dst = ROOT / "models" / name / "1", without / name / "1"
        dst.mkdir(parents=True)
        card = load_card(src)
        assert [g.role for g in card.graphs] == ["steps"]
        for f in (card.artifact.file, *(a.file for a in card.extra_files)):
            shutil.copy(src / f, dst / f)
        save_card(dst, card.model_copy(update={"graphs": []}))
    return with_steps, without


def requests(model: str) -> list[dict]:
    """Plain rows of several temperatures (greedy among them), with and without log-probabilities."""
    return [{"text_input": f"Pencroft {i} and Herbert" + " went" * (i % 3),
             "parameters": {"temperature": [0, 0.7, 1.0, 1.3][i % 4], "seed": 100 + i, "max_tokens": 40 + 7 * i,
                            **({"logprobs": 2} if i % 2 else {})}}
            for i in range(12)]


def run_all(serve, root: Path, model: str, together: bool):
    path = f"/v2/models/{model}/generate"

    async def body(client, app):
        calls = []
        stepper = app.state.repository.get(model).stepper
        if stepper.steps_run is not None:  # record how many tokens each call of the steps graph made
            real = stepper.steps_run
            stepper.steps_run = lambda feeds: calls.append(feeds["uniforms"].shape[1]) or real(feeds)
        docs = requests(model)
        if together:
            answers = await asyncio.gather(*(client.post(path, json=d) for d in docs))
        else:
            answers = [await client.post(path, json=d) for d in docs]
        return [a.json() for a in answers], calls

    return serve(root, body)


@pytest.mark.parametrize("model", MODELS)
def test_steps_graph_gives_the_tokens_and_logprobs_of_single_steps(repos, serve, model):
    """The float models' rows are independent of their batch (docs/generation.md), so requests sent
    together compare too; the INT8 model's activation scales are its batch's, so only requests alone do."""
    with_steps, without = repos
    modes = (False,) if model.endswith("-int8") else (True, False)
    reference, none = run_all(serve, without, model, together=modes[0])
    assert none == []  # no steps graph: one token per call
    for together in modes:
        got, calls = run_all(serve, with_steps, model, together)
        assert max(calls) > 1  # several tokens per call did happen
        for a, b in zip(got, reference):
            assert a["text_output"] == b["text_output"]
            assert a["details"]["generated_tokens"] == b["details"]["generated_tokens"]
            if "logprobs" in b["details"]:
                # The same float32 logits, reduced by the same numpy code: equal, not just close.
                assert json.dumps(a["details"]["logprobs"]) == json.dumps(b["details"]["logprobs"])


def test_rows_that_need_the_worker_each_token_keep_one_token_per_call(repos, serve):
    """top-k, top-p and repetition penalty are sampled in numpy, and stop sequences are checked on the
    worker after every token: a batch with any such row steps one token at a time."""
    model = "island-lstm"
    path = f"/v2/models/{model}/generate"
    special = [{"top_k": 5}, {"top_p": 0.9}, {"repetition_penalty": 1.2}, {"stop": ["zz"]}]

    async def body(client, app):
        stepper = app.state.repository.get(model).stepper
        calls = []
        real = stepper.steps_run
        stepper.steps_run = lambda feeds: calls.append(feeds["uniforms"].shape[1]) or real(feeds)
        out = []
        for extra in special:
            calls.clear()
            r = await client.post(path, json={"text_input": "Cyrus", "parameters": {"max_tokens": 30, "seed": 1,
                                                                                     **extra}})
            assert r.status_code == 200
            out.append(list(calls))
        return out

    assert serve(repos[0], body) == [[]] * len(special)


class FakeSteps:
    """A stepper with a steps graph, for chunk_limit alone."""
    steps_run = staticmethod(lambda feeds: None)
    eos = None


class FakeStepsWithEnd(FakeSteps):
    eos = 3  # an end token could end a row at any token of a call


class NoStops:
    stop = ()  # no stop sequences: the event loop renders the text


def seq(max_tokens: int, **params) -> Sequence:
    return Sequence(np.array([1, 2]), sampling.SamplingParams(**params), np.random.default_rng(0),
                    max_tokens=max_tokens, pipeline=NoStops())


def test_a_call_never_passes_the_first_rows_max_tokens():
    batch = Batch([seq(5), seq(300)])
    assert batch.chunk_limit(FakeSteps()) == 5
    batch.ends(np.zeros(2, np.int64), None)  # one token counted
    assert batch.chunk_limit(FakeSteps()) == 4
    assert Batch([seq(300), seq(300)]).chunk_limit(FakeSteps()) == sampling.BLOCK
    assert Batch([seq(300), seq(300, top_k=3)]).chunk_limit(FakeSteps()) == 1
    assert Batch([seq(300), seq(300)]).chunk_limit(FakeStepsWithEnd()) == 1
    stops = seq(300)
    stops.text_on_worker = True  # a row with stop sequences
    assert Batch([seq(300), stops]).chunk_limit(FakeSteps()) == 1


def test_draws_taken_k_at_a_time_are_the_numbers_of_k_steps():
    rows = 3
    one = sampling.Draws([sampling.Uniforms(np.random.default_rng(s)) for s in range(rows)])
    many = sampling.Draws([sampling.Uniforms(np.random.default_rng(s)) for s in range(rows)])
    singles = np.hstack([one.next() for _ in range(150)])  # (rows, 150)
    taken = np.hstack([many.take(k) for k in (1, 16, 60, 3, 64, 6)])  # across block boundaries
    np.testing.assert_array_equal(taken, singles)


def v2_tensor(name: str, datatype: str, x: np.ndarray) -> dict:
    return {"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.ravel().tolist()}


def steps_body(rows: int, k: int, token: int = 5) -> dict:
    zeros = np.zeros((1, rows, 512))
    return {"inputs": [v2_tensor("token", "INT64", np.full(rows, token)), v2_tensor("h0", "FP32", zeros),
                       v2_tensor("c0", "FP32", zeros), v2_tensor("uniforms", "FP64", np.full((rows, k), 0.5)),
                       v2_tensor("temperature", "FP64", np.ones(rows))]}


def test_v2_requests_to_a_recurrent_model_and_its_steps_graph_are_bounded(repos, serve):
    """One V2 request may not hold the model beyond the settings: at most max_batch_size rows (32 on the
    card; the batcher does not batch these graphs, so it does not count them) and max_sequence_tokens steps
    or tokens per row, and token ids within the vocabulary."""
    zeros = np.zeros((1, 33, 512))
    too_many_rows = {"inputs": [v2_tensor("tokens", "INT64", np.zeros((33, 2), np.int64)),
                                v2_tensor("h0", "FP32", zeros), v2_tensor("c0", "FP32", zeros)]}

    async def body(client, app):
        steps = "/v2/models/island-lstm.steps/infer"
        return [await client.post(steps, json=steps_body(2, 64)),
                await client.post(steps, json=steps_body(2, 65)),
                await client.post(steps, json=steps_body(33, 4)),
                await client.post(steps, json=steps_body(1, 4, token=80)),
                await client.post("/v2/models/island-lstm/infer", json=too_many_rows)]

    ok, long, wide, unknown, lm_wide = serve(repos[0], body, max_sequence_tokens=64)
    assert ok.status_code == 200
    assert {o["name"]: o["shape"] for o in ok.json()["outputs"]}["tokens"] == [2, 64]
    assert long.status_code == 400 and "at most 64 steps per row" in long.json()["error"]
    assert wide.status_code == 400 and "max_batch_size 32" in wide.json()["error"]
    assert unknown.status_code == 400 and "from 0 to 79" in unknown.json()["error"]
    assert lm_wide.status_code == 400 and "max_batch_size 32" in lm_wide.json()["error"]
