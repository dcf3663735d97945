"""OnnxModel on its own: it loads a graph, checks it against its card, runs it, and refuses what is broken."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest

from zooserve.card import ModelCard, load_card
from service.runtime.errors import ModelLoadError
from service.runtime.engine.session import ORT_TO_V2, V2_TO_NUMPY, OnnxModel, session_options
from tests.service.conftest import images

CPU = ["CPUExecutionProvider"]


def open_model(folder, card: ModelCard | None = None, **opts) -> OnnxModel:
    card = card or load_card(folder)
    return OnnxModel(folder / card.artifact.file, card, providers=CPU, options=session_options(**opts))


def card_with(folder, **changes) -> ModelCard:
    doc = json.loads((folder / "model.json").read_text())
    doc.update(changes)
    return ModelCard.model_validate(doc)


def test_good_model_loads_runs_and_matches_onnxruntime(make_repo):
    repo = make_repo(("lin", 1))
    model = open_model(repo.path("lin", 1))
    assert model.provider == "CPUExecutionProvider"
    assert model.input_names == ["input"] and model.output_names == ["logits"]
    assert model.batchable
    model.warmup()
    x = images(6)
    out = model.run({"input": x})
    assert set(out) == {"logits"} and out["logits"].shape == (6, 10) and out["logits"].dtype == np.float32
    np.testing.assert_allclose(out["logits"], repo.reference("lin", 1, {"input": x})["logits"], rtol=1e-5, atol=1e-5)


def test_two_output_model_runs_every_output_in_card_order(make_repo):
    repo = make_repo(("duo", 1, "two_outputs"))
    model = open_model(repo.path("duo", 1))
    out = model.run({"input": images(2)})
    assert list(out) == ["logits", "probabilities"]
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)


def test_fixed_first_axis_is_not_batchable(make_repo):
    repo = make_repo(("fixed", 1, "fixed_batch"))
    model = open_model(repo.path("fixed", 1))
    assert not model.batchable
    model.warmup()  # zeros of the fixed shape [1, 1, 28, 28]
    assert model.run({"input": images(1)})["logits"].shape == (1, 10)


@pytest.mark.parametrize("change, words", [
    ({"inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]}, ["inputs", '\"image\"', '\"input\"']),
    ({"outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 10]}]}, ["outputs", '\"scores\"', '\"logits\"']),
    ({"inputs": [{"name": "input", "datatype": "FP16", "shape": [-1, 1, 28, 28]}]}, ['\"input\"', "FP16", "FP32"]),
    ({"outputs": [{"name": "logits", "datatype": "INT64", "shape": [-1, 10]}]}, ['\"logits\"', "INT64", "FP32"]),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}]}, ["shape", "[-1, 784]"]),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 1, 28, 28]}]}, ["shape", "[4, 1, 28, 28]"]),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, -1]}]}, ["shape", "[-1, 1, 28, -1]"]),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]},
                 {"name": "mask", "datatype": "BOOL", "shape": [-1, 28]}]}, ["inputs", '\"mask\"']),
    # W is a constant of this graph (an initializer, not a graph input): nothing a request could override.
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]},
                 {"name": "W", "datatype": "FP32", "shape": [784, 10], "optional": True}]},
     ["optional input", '\"W\"', "holds no default"]),
])
def test_card_that_disagrees_with_the_graph_is_refused(make_repo, change, words):
    repo = make_repo(("lin", 1))
    folder = repo.path("lin", 1)
    with pytest.raises(ModelLoadError) as info:
        open_model(folder, card_with(folder, **change))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_fixed_axis_in_the_graph_must_be_fixed_in_the_card(make_repo):
    repo = make_repo(("fixed", 1, "fixed_batch"))
    folder = repo.path("fixed", 1)
    card = card_with(folder, inputs=[{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}])
    with pytest.raises(ModelLoadError, match=r"card says shape \[-1, 1, 28, 28\], graph has \[1, 1, 28, 28\]"):
        open_model(folder, card)


def test_missing_and_corrupt_files_are_refused(make_repo):
    repo = make_repo(("gone", 1, "missing_onnx"), ("junk", 1, "corrupt"))
    with pytest.raises(ModelLoadError, match="model.onnx is missing"):
        open_model(repo.path("gone", 1))
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load it"):
        open_model(repo.path("junk", 1))


@pytest.mark.parametrize("level, expected", [
    ("disable", ort.GraphOptimizationLevel.ORT_DISABLE_ALL), ("basic", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    ("extended", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED), ("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
])
def test_session_options(level, expected):
    opts = session_options(2, 1, level)
    assert opts.graph_optimization_level == expected
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (2, 1)


@pytest.mark.parametrize("level", ["disable", "all"])
def test_results_do_not_depend_on_the_optimisation_level(make_repo, level):
    repo = make_repo(("lin", 1))
    x = images(3)
    out = open_model(repo.path("lin", 1), level=level, intra_op=1).run({"input": x})
    np.testing.assert_allclose(out["logits"], repo.reference("lin", 1, {"input": x})["logits"], rtol=1e-5, atol=1e-5)


def test_type_tables_agree():
    # every onnxruntime type the card can name maps to a numpy dtype of the same kind
    for ort_type, v2 in ORT_TO_V2.items():
        assert v2 in V2_TO_NUMPY, v2
    assert np.dtype(V2_TO_NUMPY["FP32"]) == np.float32 and np.dtype(V2_TO_NUMPY["BOOL"]) == np.bool_
    assert np.dtype(V2_TO_NUMPY["INT64"]) == np.int64 and np.dtype(V2_TO_NUMPY["FP16"]) == np.float16


class ProbeRecorder:
    """OnnxModel.row_cost_us against a fake clock: each run "costs" `us_per_token` per row and token (an
    image counts as one token), and the (rows, length) of every run is recorded."""

    def __init__(self, monkeypatch, max_length: int | None, us_per_token: float):
        from service.runtime.engine import session as session_module

        self.runs: list[tuple[int, int]] = []
        self.clock, self.us_per_token = 0.0, us_per_token
        monkeypatch.setattr(session_module.time, "process_time", lambda: self.clock)
        shape = [-1, -1] if max_length else [-1, 1, 28, 28]
        card = SimpleNamespace(preprocess=SimpleNamespace(max_length=max_length),
                               inputs=[SimpleNamespace(name="x", shape=shape, datatype="INT64", optional=False)])
        self.model = OnnxModel.__new__(OnnxModel)
        self.model.card, self.model.run = card, self.run

    def run(self, feeds):
        rows, length = feeds["x"].shape[0], feeds["x"].shape[1] if feeds["x"].ndim == 2 else 1
        self.runs.append((rows, length))
        self.clock += rows * length * self.us_per_token / 1e6


@pytest.mark.parametrize("max_length, us_per_token, settled, runs, cost", [
    # text: 8 tokens first; at 40 us a token that is 320 us a row, settled at 300: no run at 64 tokens
    (64, 40.0, 300.0, [(16, 8)], 320.0),
    # 8 tokens cost 80 us a row, not settled; the first run at 64 tokens (640 us) is
    (64, 10.0, 300.0, [(16, 8), (16, 64)], 640.0),
    # a cheap model: one short run, then the best of three at the longest length
    (64, 1.0, 300.0, [(16, 8), (16, 64), (16, 64), (16, 64)], 64.0),
    # no early end asked for: the same
    (64, 40.0, float("inf"), [(16, 8), (16, 64), (16, 64), (16, 64)], 2560.0),
    # images: one length; settled at once, or three runs
    (None, 400.0, 300.0, [(16, 1)], 400.0),
    (None, 100.0, 300.0, [(16, 1)] * 3, 100.0),
])
def test_cost_probe_ends_once_the_figure_is_settled(monkeypatch, max_length, us_per_token, settled, runs, cost):
    probe = ProbeRecorder(monkeypatch, max_length, us_per_token)
    assert probe.model.row_cost_us(settled_us=settled) == pytest.approx(cost)
    assert probe.runs == runs
