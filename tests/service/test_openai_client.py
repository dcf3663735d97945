"""The unchanged `openai` Python package against a real server (a subprocess on 127.0.0.1): the model list,
and completions with and without streaming, usage included."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.serve_fixture import running_server

openai = pytest.importorskip("openai")
ROOT = Path(__file__).resolve().parents[2]
MODEL = "island-lstm"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("openai-repo")
    (repo / MODEL).symlink_to(ROOT / "models" / MODEL)
    with running_server(repo, workdir=tmp_path_factory.mktemp("openai-run")) as srv:
        yield srv


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=30)


def test_model_list(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL] and models.data[0].object == "model"


def test_completion_non_stream_and_stream_agree(client):
    kw = dict(model=MODEL, prompt="The engineer and the sailor", max_tokens=30, temperature=0.7, seed=5,
              logprobs=2, extra_body={"top_k": 20})
    full = client.completions.create(**kw)
    choice = full.choices[0]
    assert full.object == "text_completion" and choice.finish_reason == "length" and len(choice.text) == 30
    assert full.usage.prompt_tokens == 27 and full.usage.completion_tokens == 30 and full.usage.total_tokens == 57
    assert len(choice.logprobs.tokens) == 30 and "".join(choice.logprobs.tokens) == choice.text

    chunks = list(client.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 57
    assert "".join(c.choices[0].text for c in chunks[:-1]) == choice.text  # same seed: same text
    assert chunks[-2].choices[0].finish_reason == "length"

    plain = list(client.completions.create(model=MODEL, prompt="Pencroft", max_tokens=5, temperature=0, stream=True))
    assert len(plain) == 5 and all(c.usage is None for c in plain)


def test_client_sees_errors_as_exceptions(client):
    # OpenAI's error shape: the client shows the server's message and keeps type, param and code.
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=MODEL, prompt="a", temperature=-1)
    assert "temperature" in bad.value.message and "temperature" in str(bad.value)
    assert bad.value.type == "invalid_request_error" and bad.value.param == "temperature"
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="no-such-model", prompt="a")
    assert "no-such-model" in str(missing.value) and missing.value.code == "model_not_found"
    assert missing.value.param == "model"
