"""A model version's files as the repository reads them: the card, then every file it lists, each checked
against its recorded size and sha256 and read once (the graph goes to onnxruntime as bytes)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from service.runtime.errors import ModelLoadError
from zooserve.card import CARD_FILE, Artifact, ModelCard, load_card


def read_card(folder: Path, name: str, version: int) -> ModelCard:
    try:
        card = load_card(folder / CARD_FILE)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{CARD_FILE} is missing") from exc
    except ValueError as exc:
        raise ModelLoadError(f"{CARD_FILE} is not a valid model card: {exc}") from exc
    if (card.name, card.version) != (name, version):
        raise ModelLoadError(f"the folder {name}/{version} holds a card for {card.name}/{card.version}")
    return card


def verified_bytes(folder: Path, art: Artifact) -> bytes:
    """A file the card lists, which must have its recorded size and sha256: a graph changed after export
    would otherwise serve wrong answers silently."""
    try:
        blob = (folder / art.file).read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{art.file} is missing or unreadable ({exc.strerror or type(exc).__name__})") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if len(blob) != art.bytes or digest != art.sha256:
        raise ModelLoadError(f"{art.file} does not match its card: sha256 {digest[:16]}... and {len(blob)} bytes, "
                             f"the card says {art.sha256[:16]}... and {art.bytes} bytes")
    return blob


def card_files(folder: Path, card: ModelCard) -> dict[str, bytes]:
    """The graph, every further graph and every extra file of the card, by file name, each checked."""
    arts = (card.artifact, *(g.artifact for g in card.graphs), *card.extra_files)
    return {art.file: verified_bytes(folder, art) for art in arts}


def graph_card(card: ModelCard, role: str) -> ModelCard:
    """The card a further graph is opened and served under: the model `<name>.<role>`, with the graph's
    inputs, outputs, parity and file; the version, task, family, batching hints and postprocess of its model.
    It has no preprocess nor labels (a decoder reads codes) and no graphs of its own."""
    g = card.graph(role)
    return card.model_copy(update={"name": f"{card.name}.{role}", "inputs": g.inputs, "outputs": g.outputs,
                                   "parity": g.parity, "artifact": g.artifact, "graphs": [], "preprocess": None,
                                   "labels": None, "extra_files": []})
