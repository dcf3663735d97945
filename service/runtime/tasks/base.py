"""`ServedModel`: one loaded model version, as the repository holds it and the routers call it.

In the spirit of MLServer's `MLModel` and LitServe's decode -> batch -> predict -> unbatch -> encode: a
subclass per task (image classifier, text classifier, language model, generator, autoencoder) turns a task
request into tensors (decode), queues them on the model's batcher (batch, predict, unbatch: `engine.batcher`)
and turns the outputs back into the task's answer (encode). Every model also answers raw V2 tensors (`infer`).
A task a model does not serve answers 400 naming what the model is; no router branches on the card.

Further graphs (the card's `graphs`, e.g. a VAE's decoder) are `GraphModel`s the version holds: each has its
own session and batcher and serves V2 as the model `<name>.<role>`, but shares the version's leases and
lifetime, so a lease on `fashion-vae.decoder` holds `fashion-vae` and a reload swaps and drains both.

Which class serves a card is `tasks.registry`'s decision. Construction happens in a worker thread during
the load (files read and checked, session warm); a class raises ModelLoadError for files it cannot use.

Leases: the repository hands a model out only inside a lease (`async with repo.acquire(...)`), and a
reload or unload drains a model only once its leases are over. A lease covers a request from the lookup
until its work is queued; what is queued (batcher rows, generating sequences) the engine drains itself.
"""

from __future__ import annotations

import asyncio
from functools import cached_property
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from service.runtime.engine.arrivals import Arrivals
from service.runtime.engine.batcher import DynamicBatcher
from service.runtime.engine.session import V2_TO_NUMPY, OnnxModel
from service.runtime.errors import BadInput, shown
from service.settings import Settings
from zooserve.card import ModelCard

if TYPE_CHECKING:  # only for annotations: generation imports nothing from tasks
    from service.runtime.generation.request import GenRequest, Generation

Tensors = dict[str, np.ndarray]


@dataclass
class ClassifyRequest:
    """What `/classify` (or, for images, `/reconstruct` and `/embed`) received, not yet decoded: decoding needs
    the model's card. Exactly one of the three kinds is given. `where` strings name each item in error messages
    ("images[2]", "files[0] (a.png)")."""

    images: list[tuple[str, bytes | str]] = field(default_factory=list)  # (where, PNG/JPEG: raw, or base64 text)
    arrays: list[tuple[str, object]] = field(default_factory=list)  # (where, nested lists of 0-255 pixels)
    texts: list[str] | None = None
    field: str = "texts"  # the JSON field the texts came in: "texts", or "text" for a single one
    top_k: int | None = None


class Leases:
    """How many requests hold a model; `idle()` returns once none does (an event, not polling)."""

    __slots__ = ("count", "_idle")

    def __init__(self):
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def take(self) -> None:
        self.count += 1
        self._idle.clear()

    def give_back(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def idle(self) -> None:
        await self._idle.wait()


class ServedModel:
    """A model version that serves V2 tensors. Subclasses add a task (`classify`, `score`, `generate`)."""

    noun = "a model"  # what it is, in messages: "an image classifier"

    def __init__(self, card: ModelCard, session: OnnxModel, *, files: dict[str, bytes], settings: Settings,
                 arrivals: Arrivals | None = None, graphs: dict[str, OnnxModel] | None = None):
        """`files`: the card's checked extra files by name (vocabularies, tokenizers), read once at load.
        `graphs`: role -> the open session of each further graph of the card (its `.card` is the graph's view,
        repository.files.graph_card)."""
        self.card, self.session, self.settings, self.load_seconds = card, session, settings, 0.0
        size, delay = settings.batching_for(card.name, card.batching.max_batch_size, card.batching.max_delay_ms)
        self.max_rows = size  # rows one request may carry, also where the batcher does not batch (it takes 1)
        self.batcher = DynamicBatcher(session.run, model=card.name, max_batch_size=size, max_delay_ms=delay,
                                      max_queue=settings.max_queue, enabled=session.batchable, pad=self.pad_values(),
                                      arrivals=arrivals)
        self.leases = Leases()
        self.graphs = {role: self.graph_class(role)(s.card, s, settings=settings, arrivals=arrivals,
                                                    leases=self.leases)
                       for role, s in (graphs or {}).items()}

    def graph_class(self, role: str) -> type[GraphModel]:
        """How a further graph of this model is served: GraphModel, unless its task knows the graph better."""
        return GraphModel

    def pad_values(self) -> dict[str, int] | None:
        """Inputs (rows, T) of varying T, with their fill values: the batcher pads them (text models)."""
        return None

    # -- lifecycle ---------------------------------------------------------------------------------
    def engines(self) -> tuple:
        """What runs this model's work (batcher, scheduler), in the order their work should drain."""
        return (self.batcher,)

    def all_engines(self) -> tuple:
        """This model's engines, then its further graphs' (a request may queue on a graph after the model)."""
        return (*self.engines(), *(e for g in self.graphs.values() for e in g.engines()))

    def start(self) -> None:
        for engine in self.all_engines():
            engine.start()

    async def drain_and_stop(self) -> None:
        """Wait until no request holds the model (or one of its graphs), then let queued work finish and stop."""
        await self.leases.idle()
        for engine in self.all_engines():
            await engine.drain_and_stop()

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> int:
        return self.card.version

    # -- the tasks -----------------------------------------------------------------------------------
    def wrong_task(self, endpoint: str, serves: str) -> BadInput:
        return BadInput(f"model {shown(self.name)} is {self.noun}; {endpoint} serves {serves}")

    async def infer(self, inputs: Tensors, *, timeout_s: float, requested: list[str] | None = None) -> Tensors:
        """V2 tensors, checked against the card, through the batcher."""
        self.check_inputs(inputs)
        if requested is not None:
            unknown = set(requested) - set(self.session.output_names)
            if unknown:
                raise BadInput(f"model {shown(self.name)} has no output(s) {shown(sorted(unknown))}; it has "
                               f"{shown(self.session.output_names, 400)}")
        return await self.batcher.submit(inputs, timeout_s=timeout_s)

    async def classify(self, request: ClassifyRequest, *, timeout_s: float) -> list[list[dict]]:
        """Per image or text, the most likely labels with their probabilities."""
        raise self.wrong_task("/classify", "image and subword text classifiers")

    async def score(self, text, *, timeout_s: float) -> dict:
        """The log-probability of each token of `text`, and of the whole."""
        raise self.wrong_task("/score", "char and word language models")

    def generate(self, request: GenRequest) -> Generation:
        """Start a generation on the model's scheduler (which may refuse it: Overloaded)."""
        raise self.wrong_task("generation", "char and word language models")

    async def sample(self, n, *, seed, label, fmt: str, timeout_s: float) -> dict:
        """n new images from `seed` (drawn when None), of class `label` (a name or index) if conditional."""
        raise self.wrong_task("/sample", "image generators and variational autoencoders")

    async def reconstruct(self, request: ClassifyRequest, *, fmt: str, timeout_s: float) -> dict:
        """Each image passed through the autoencoder (encoder, then decoder), as pixels in `fmt`."""
        raise self.wrong_task("/reconstruct", "autoencoders")

    async def embed(self, request: ClassifyRequest, *, timeout_s: float) -> dict:
        """Each image's code (the encoder's output)."""
        raise self.wrong_task("/embed", "autoencoders")

    def index_bounds(self) -> dict[str, tuple[int, int]]:
        """Integer inputs that index something (token ids into an embedding): name -> (lowest, highest)
        allowed. A value outside makes onnxruntime fail (or read past a table), so it is refused up front."""
        return {}

    def max_length(self) -> int | None:
        """The longest sequence (axis 1 of the index inputs) the model takes, if it has a limit."""
        return None

    def check_values(self, inputs: Tensors) -> None:
        limit = self.max_length()
        for name, (lo, hi) in self.index_bounds().items():
            arr = inputs.get(name)
            if arr is None or not arr.size:
                continue
            if limit is not None and arr.ndim >= 2 and arr.shape[1] > limit:
                raise BadInput(f"input {shown(name)}: at most {limit} tokens per row (axis 1), got {arr.shape[1]}")
            low, high = int(arr.min()), int(arr.max())
            if low < lo or high > hi:
                raise BadInput(f"input {shown(name)}: values must be from {lo} to {hi}, got "
                               f"{low if low < lo else high}")

    @cached_property
    def _input_specs(self) -> tuple[dict, frozenset, frozenset]:
        """The card's inputs as check_inputs reads them: name -> (spec, numpy dtype), the required names, and
        all names. Built once: the card does not change while the version serves."""
        specs = {s.name: (s, np.dtype(V2_TO_NUMPY[s.datatype])) for s in self.card.inputs}
        return specs, frozenset(s.name for s in self.card.inputs if not s.optional), frozenset(specs)

    def check_inputs(self, inputs: Tensors) -> None:
        """Names, datatypes and shapes must match the card (-1 = any size), optional inputs may be left out;
        rows must fit one batch. The batcher batches only requests with the same inputs and trailing shapes."""
        expected, required, known = self._input_specs
        names = inputs.keys()
        if not (required <= names and names <= known):
            optional = sorted(known - required)
            raise BadInput(f"model {shown(self.card.name)} takes inputs {shown(sorted(required), 400)}"
                           + (f" and optionally {shown(optional, 400)}" if optional else "")
                           + f", got {shown(sorted(inputs))}")
        for name, arr in inputs.items():
            spec, dtype = expected[name]
            if arr.dtype != dtype:
                raise BadInput(f"input {shown(name)}: datatype must be {spec.datatype}")
            if arr.ndim != len(spec.shape) or any(s != -1 and s != d for s, d in zip(spec.shape, arr.shape)):
                raise BadInput(f"input {shown(name)}: shape must be {spec.shape} (-1 = any), got {list(arr.shape)}")
            if arr.shape and arr.shape[0] == 0:
                raise BadInput(f"input {shown(name)}: the batch is empty")
        self.check_values(inputs)
        batchable = self.session.batchable
        rows = {name: arr.shape[0] for name, arr in inputs.items() if arr.ndim}
        if batchable and len(set(rows.values())) > 1:
            raise BadInput(f"inputs disagree on the batch size (their first axis): {rows}")
        if batchable:
            self.check_rows(next(iter(inputs.values())).shape[0])

    def check_rows(self, rows: int) -> None:
        """A request fits one batch. Task classes call it before decoding anything, so that an oversized
        request costs nothing."""
        limit = self.max_rows
        if rows > limit:
            raise BadInput(f"batch of {rows} rows exceeds this model's max_batch_size {limit}")


class GraphModel(ServedModel):
    """A further graph of a model version (a VAE's decoder), served over V2 as `<name>.<role>`: its own session
    and batcher, the version's leases (the version drains it with its own engines)."""

    def __init__(self, card: ModelCard, session: OnnxModel, *, settings: Settings, arrivals: Arrivals | None,
                 leases: Leases):
        super().__init__(card, session, files={}, settings=settings, arrivals=arrivals)
        self.leases = leases
        parent, _, role = card.name.rpartition(".")
        self.noun = f"the {role} graph of {shown(parent)} (V2 inference only: ask {shown(parent)} for its tasks)"
