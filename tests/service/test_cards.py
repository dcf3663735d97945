"""GET /v1/models/{m}[/versions/{v}]/card: the serving version's card as the server validated it, with file
paths cut to file names; 404 for what does not exist, 503 for what does not serve."""

from __future__ import annotations

import json

import pytest

from service.routers.cards import without_paths
from zooserve.card import ModelCard


def test_the_card_is_the_file_the_server_loaded_in_json(make_repo, serve):
    repo = make_repo(("lin", 1), ("lin", 2))

    async def body(client, app):
        return [await client.get(p) for p in ("/v1/models/lin/card", "/v1/models/lin/versions/1/card")]

    newest, first = serve(repo.root, body, model_versions={"lin": [1, 2]})
    for resp, version in ((newest, 2), (first, 1)):
        assert resp.status_code == 200
        on_disk = ModelCard.model_validate_json((repo.path("lin", version) / "model.json").read_bytes())
        assert resp.json() == on_disk.model_dump(mode="json", by_alias=True)
        assert resp.json()["version"] == version and resp.json()["training"]["model_config"] == {}  # by its alias


def test_paths_in_a_card_are_cut_to_file_names(make_repo, serve):
    repo = make_repo(("lin", 1))
    card_file = repo.path("lin") / "model.json"
    card = json.loads(card_file.read_text())
    card["training"]["train_config"] = {"corpus": "/srv/secret/data/mysterious_island.txt",
                                        "runs": "../shared/runs/", "init": "sentence-transformers/all-MiniLM-L6-v2"}
    card_file.write_text(json.dumps(card))

    async def body(client, app):
        return (await client.get("/v1/models/lin/card")).json()

    shown = serve(repo.root, body)
    assert shown["training"]["train_config"] == {"corpus": "mysterious_island.txt", "runs": "runs",
                                                 "init": "sentence-transformers/all-MiniLM-L6-v2"}
    assert shown["family"] == "test/linear" and "/srv" not in json.dumps(shown)


@pytest.mark.parametrize("value, shown", [
    ("/abs/path/file.txt", "file.txt"), ("~/data/x.gz", "x.gz"), ("./vocab.json", "vocab.json"),
    ("../shared/data/corpus.txt", "corpus.txt"), ("C:\\data\\tweets.csv", "tweets.csv"), ("\\\\host\\share\\f", "f"),
    ("cnn/lenet", "cnn/lenet"), ("T-shirt/top", "T-shirt/top"), ("fashion-lenet/1", "fashion-lenet/1"),
    ("contiguous by position: 90% train / 10% test", "contiguous by position: 90% train / 10% test"),
])
def test_what_counts_as_a_path(value, shown):
    assert without_paths({"a": [{"b": value}], "n": 1.5}) == {"a": [{"b": shown}], "n": 1.5}


def test_unknown_models_and_versions_are_404_and_a_broken_one_503(make_repo, serve):
    repo = make_repo(("lin", 1), ("bad", 1, "corrupt"))

    async def body(client, app):
        return [await client.get(p) for p in ("/v1/models/nope/card", "/v1/models/lin/versions/9/card",
                                              "/v1/models/bad/card")]

    nope, version, broken = serve(repo.root, body)
    assert nope.status_code == 404 and nope.json() == {"error": 'unknown model "nope"'}
    assert version.status_code == 404 and "has no version 9" in version.json()["error"]
    assert broken.status_code == 503 and broken.json()["error"].startswith('model "bad" version 1 is UNAVAILABLE')
