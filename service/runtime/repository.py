"""The model repository: scan `<root>/<name>/<version>/`, load, unload and reload models at run time.

Each version loads on its own: a missing or corrupt file, or a card that disagrees with its graph, makes
that version UNAVAILABLE with the reason kept for the metadata endpoints and the logs; the rest serve.
A reload swaps the new version in first and then drains the old one, so requests already on it finish.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import onnxruntime as ort

from service import metrics
from zooserve.card import CARD_FILE, Artifact, ModelCard, load_card
from service.runtime.batcher import Arrivals, DynamicBatcher
from service.runtime.errors import ModelLoadError, ModelNotFound, ModelNotReady, shown
from service.runtime.lm_step import stepper_for
from service.runtime.onnx_model import OnnxModel, select_providers, session_options
from service.runtime.scheduler import Scheduler
from service.settings import Settings
from zooserve.text import ATTENTION_MASK, INPUT_IDS, SubwordTokenizer, Vocab

log = logging.getLogger(__name__)



class ModelState(str, Enum):
    """A model version's state, as the V2 repository extension spells it (a str: JSON shows the value)."""

    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"

    def __str__(self) -> str:  # in messages and logs: "is READY", not "is ModelState.READY"
        return self.value

    __format__ = str.__format__  # f-strings too (Python 3.10 and 3.11 differ here without it)


READY, UNAVAILABLE, LOADING, UNLOADING = ModelState  # the names this module uses


@dataclass
class Loaded:
    """A serving model version: its card, session and batcher."""

    card: ModelCard
    model: OnnxModel
    batcher: DynamicBatcher
    load_seconds: float
    vocab: Vocab | None = None  # char and word language models: their vocab.json
    scheduler: Scheduler | None = None  # language models: the continuous-batching generation loop
    tokenizer: SubwordTokenizer | None = None  # wordpiece/bpe text classifiers: their tokenizer.json

    def start(self) -> None:
        self.batcher.start()
        if self.scheduler:
            self.scheduler.start()

    async def drain_and_stop(self) -> None:
        """In-flight requests and generations finish first."""
        if self.scheduler:
            await self.scheduler.drain_and_stop()
        await self.batcher.drain_and_stop()

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def version(self) -> int:
        return self.card.version


@dataclass
class Entry:
    name: str
    version: int
    state: ModelState
    reason: str = ""
    loaded: Loaded | None = None


def verified_bytes(folder: Path, art: Artifact) -> bytes:
    """A file the card lists, which must have its recorded size and sha256: a graph changed after export
    would otherwise serve wrong answers silently."""
    path = folder / art.file
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{path} is missing or unreadable: {exc}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if len(blob) != art.bytes or digest != art.sha256:
        raise ModelLoadError(f"{path} does not match its card: sha256 {digest[:16]}... and {len(blob)} bytes, the "
                             f"card says {art.sha256[:16]}... and {art.bytes} bytes")
    return blob


def serving_session_options(s: Settings) -> ort.SessionOptions:
    """onnxruntime options as the server uses them (benchmarks/serve_bench.py builds its raw sessions with this).

    On a small machine the event loop (HTTP, JSON, batching) needs a core of its own: by default onnxruntime
    takes one thread per core and its pool spins between runs, so it starves the loop that feeds it (on 2 cores
    this halved LeNet's throughput). So `intra_op_threads=0` means one fewer than the usable cores, and idle
    pool threads sleep instead of spinning."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    intra = s.intra_op_threads or max(1, cores - 1)
    opts = session_options(intra, s.inter_op_threads, s.graph_optimization)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def subword_tokenizer(folder: Path, card: ModelCard, blobs: dict[str, bytes]) -> SubwordTokenizer | None:
    """A wordpiece/bpe card's tokenizer.json, which must be one of its checked (sha256) extra files."""
    pre = card.preprocess
    if pre.kind != "text" or not pre.tokenizer_file:
        return None
    if pre.tokenizer_file not in blobs:
        raise ModelLoadError(f"{pre.tokenizer_file} is not listed in the card's extra_files (size and sha256), so it "
                             f"cannot be checked")
    if sorted(i.name for i in card.inputs) != sorted((INPUT_IDS, ATTENTION_MASK)):
        raise ModelLoadError(f"a {pre.tokenizer} text model takes {INPUT_IDS} and {ATTENTION_MASK}, the card lists "
                             f"{[i.name for i in card.inputs]}")
    try:
        return SubwordTokenizer(blobs[pre.tokenizer_file], max_length=pre.max_length,
                                special_tokens=pre.special_tokens, vocab_size=pre.vocab_size)
    except ValueError as exc:
        raise ModelLoadError(f"{folder / pre.tokenizer_file}: {exc}") from exc


def settle_heap() -> None:
    """Freeze what is alive once models are (re)loaded: their cards, vocabularies and the sessions' Python
    side leave the cyclic GC's generations, so its full collections scan per-request garbage only. Each
    used to walk every loaded object: p99 at 64 LeNet clients 30 ms -> 10 ms (benchmarks/serve_bench.py).
    Unfreezing first lets this collection reclaim cycles left by versions that were unloaded."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class _Table(dict):
    """(name, version) -> Entry, plus each name's entries in version order (`by_name`), kept up to date on
    every change. Changes are rare (loads, unloads); lookups happen on every request, and sorting the whole
    table per request cost the V2 infer path 8% of its event-loop time at 64 clients (py-spy)."""

    def __init__(self):
        super().__init__()
        self.by_name: dict[str, list[Entry]] = {}

    def __setitem__(self, key: tuple[str, int], entry: Entry) -> None:
        super().__setitem__(key, entry)
        self._index(key[0])

    def __delitem__(self, key: tuple[str, int]) -> None:
        super().__delitem__(key)
        self._index(key[0])

    def _index(self, name: str) -> None:
        versions = sorted(v for n, v in self if n == name)
        if versions:
            self.by_name[name] = [self[(name, v)] for v in versions]
        else:
            self.by_name.pop(name, None)


class ModelRepository:
    def __init__(self, settings: Settings, available_providers: list[str] | None = None):
        self.settings = settings
        self.root = Path(settings.repository)
        self.providers = select_providers(settings.providers, available_providers or ort.get_available_providers())
        self._entries = _Table()
        self._locks: dict[str, asyncio.Lock] = {}
        self._poller: asyncio.Task | None = None
        self.arrivals = Arrivals()  # V2 infer requests being read or parsed, per model: what batches wait for

    # -- discovery -------------------------------------------------------------------------------
    def scan(self) -> dict[str, list[int]]:
        """Model name -> versions on disk (folders with a numeric name), ascending."""
        found: dict[str, list[int]] = {}
        if self.root.is_dir():
            for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                versions = sorted(int(v.name) for v in model_dir.iterdir() if v.is_dir() and v.name.isdigit())
                if versions:
                    found[model_dir.name] = versions
        return found

    def wanted_versions(self, name: str, on_disk: list[int]) -> list[int]:
        pinned = self.settings.model_versions.get(name)
        return [v for v in pinned if v in on_disk] if pinned else on_disk[-1:]

    # -- loading ---------------------------------------------------------------------------------
    def _load_blocking(self, name: str, version: int) -> Loaded:
        t0 = time.perf_counter()
        folder = self.root / name / str(version)
        try:
            card = load_card(folder / CARD_FILE)
        except FileNotFoundError as exc:
            raise ModelLoadError(f"{folder / CARD_FILE} is missing") from exc
        except ValueError as exc:
            raise ModelLoadError(f"{folder / CARD_FILE} is not a valid model card: {exc}") from exc
        if (card.name, card.version) != (name, version):
            raise ModelLoadError(f"{folder} holds a card for {card.name}/{card.version}")
        # Each file is read once: checked here, then handed on (the graph to onnxruntime as bytes).
        blobs = {art.file: verified_bytes(folder, art) for art in (card.artifact, *card.extra_files)}
        s = self.settings
        opts = serving_session_options(s)
        model = OnnxModel(folder / card.artifact.file, card, providers=self.providers, options=opts,
                          blob=blobs[card.artifact.file])
        try:
            model.warmup()
        except Exception as exc:  # onnxruntime raises its own types: any failure here is this model's alone
            raise ModelLoadError(f"the warm-up inference failed: {type(exc).__name__}: {exc}") from exc
        if not model.batchable and card.task == "language-model":
            # Expected: a stepping graph's state is (layers, batch, hidden). Not worth a warning at every start.
            log.info("%s/%s: V2 infer and /score run each request on its own (the state's batch axis is its "
                     "second); generation steps sequences together", name, version)
        elif not model.batchable:
            log.warning("%s/%s: first axis is not dynamic (-1) in every input and output; batching is off", name, version)
        tokenizer = subword_tokenizer(folder, card, blobs)
        size, delay = s.batching_for(name, card.batching.max_batch_size, card.batching.max_delay_ms)
        batcher = DynamicBatcher(model.run, model=name, max_batch_size=size, max_delay_ms=delay,
                                 max_queue=s.max_queue, enabled=model.batchable,
                                 pad=tokenizer.pad_values if tokenizer else None, arrivals=self.arrivals)
        vocab = None
        if card.preprocess.kind == "text" and card.preprocess.vocab_file:
            try:
                vocab = Vocab.from_json(blobs[card.preprocess.vocab_file])
            except (KeyError, ValueError, TypeError) as exc:
                raise ModelLoadError(f"{folder / card.preprocess.vocab_file} is not a valid vocabulary: {exc}") from exc
            if len(vocab) != card.preprocess.vocab_size:
                raise ModelLoadError(f"the vocabulary has {len(vocab)} tokens, the card says {card.preprocess.vocab_size}")
        stepper = stepper_for(card, vocab, model.run)
        scheduler = stepper and Scheduler(stepper, model=name, max_active=s.generation_max_active,
                                          max_waiting=s.generation_max_waiting)
        return Loaded(card, model, batcher, time.perf_counter() - t0, vocab, scheduler, tokenizer)

    async def load(self, name: str) -> list[Entry]:
        """(Re)load the wanted versions of `name` from disk; unload versions no longer wanted."""
        try:
            return await self._load(name)
        finally:
            settle_heap()

    async def _load(self, name: str) -> list[Entry]:
        on_disk = self.scan().get(name)
        if not on_disk:
            raise ModelNotFound(f"model {shown(name)} is not in the repository {self.root}")
        async with self._locks.setdefault(name, asyncio.Lock()):
            wanted = self.wanted_versions(name, on_disk)
            results = []
            for version in wanted:
                results.append(await self._load_version(name, version))
            # When nothing new serves, keep whatever served before rather than take the model down.
            keep_ready = not any(e.state == READY for e in results)
            stale = [k for k, e in self._entries.items() if k[0] == name and k[1] not in wanted
                     and not (keep_ready and e.state == READY)]
            for n, v in stale:
                await self._drop(n, v)
            return results

    async def _load_version(self, name: str, version: int) -> Entry:
        key = (name, version)
        old = self._entries.get(key)
        if not (old and old.loaded):  # a reload keeps the serving session READY until the new one is in
            self._entries[key] = Entry(name, version, LOADING)
        try:
            loaded = await asyncio.to_thread(self._load_blocking, name, version)
        except ModelLoadError as exc:
            log.error("model %s/%s is unavailable: %s", name, version, exc)
            self._entries[key] = entry = Entry(name, version, UNAVAILABLE, str(exc))
            metrics.MODEL_READY.labels(name, str(version)).set(0)
        else:
            loaded.start()
            self._entries[key] = entry = Entry(name, version, READY, loaded=loaded)
            metrics.MODEL_READY.labels(name, str(version)).set(1)
            metrics.MODEL_LOAD_SECONDS.labels(name, str(version)).set(loaded.load_seconds)
            log.info("model %s/%s ready on %s in %.3fs", name, version, loaded.model.provider, loaded.load_seconds)
        if old and old.loaded and old.loaded is not entry.loaded:
            await old.loaded.drain_and_stop()  # in-flight requests on the old session finish first
        return entry

    async def _drop(self, name: str, version: int, *, keep_as: str | None = None) -> None:
        """Drain and release a version; forget it, or (with `keep_as`) keep it listed as UNAVAILABLE."""
        entry = self._entries.get((name, version))
        if entry is None:
            return
        self._entries[(name, version)] = Entry(name, version, UNLOADING)
        if entry.loaded:
            await entry.loaded.drain_and_stop()
        if keep_as is None:
            del self._entries[(name, version)]
        else:
            self._entries[(name, version)] = Entry(name, version, UNAVAILABLE, keep_as)
        metrics.MODEL_READY.labels(name, str(version)).set(0)

    async def unload(self, name: str) -> None:
        """Release every version of `name`. It stays known (UNAVAILABLE, 503) until it is loaded again."""
        keys = [k for k in self._entries if k[0] == name]
        if not keys:
            raise ModelNotFound(f"model {shown(name)} is not loaded")
        async with self._locks.setdefault(name, asyncio.Lock()):
            for n, v in keys:
                await self._drop(n, v, keep_as="unloaded by request")
        settle_heap()

    async def load_all(self) -> None:
        await asyncio.gather(*(self._load(name) for name in self.scan()))
        settle_heap()

    async def close(self) -> None:
        if self._poller:
            self._poller.cancel()
        for n, v in list(self._entries):
            await self._drop(n, v)

    def start_polling(self) -> None:
        """Pick up new versions (and new models) that appear on disk, every `poll_interval_s`."""
        if self.settings.poll_interval_s > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            for name, versions in self.scan().items():
                wanted = set(self.wanted_versions(name, versions))
                have = {v for (n, v) in self._entries if n == name}
                if wanted != have:
                    log.info("repository poll: %s versions on disk %s, loaded %s", name, sorted(wanted), sorted(have))
                    await self.load(name)

    # -- lookup ----------------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        return [self._entries[k] for k in sorted(self._entries)]

    def knows(self, name: str) -> bool:
        return name in self._entries.by_name

    def _of(self, name: str) -> list[Entry]:
        """`name`'s entries, oldest version first (the index's own list: not to be changed)."""
        found = self._entries.by_name.get(name)
        if not found:
            raise ModelNotFound(f"unknown model {shown(name)}")
        return found

    def versions(self, name: str) -> list[Entry]:
        return list(self._of(name))

    def entry(self, name: str, version: int | None = None) -> Entry:
        entries = self._of(name)
        if version is None:
            # The newest ready version, else the newest (whose state explains why it does not serve).
            return next((e for e in reversed(entries) if e.state == READY), entries[-1])
        for e in entries:
            if e.version == version:
                return e
        raise ModelNotFound(f"model {shown(name)} has no version {version} (known: {[e.version for e in entries]})")

    def get(self, name: str, version: int | None = None) -> Loaded:
        """The serving model version, or ModelNotFound (404) / ModelNotReady (503)."""
        e = self.entry(name, version)
        if e.state != READY or e.loaded is None:
            raise ModelNotReady(f"model {shown(name)} version {e.version} is {e.state}" + (f": {e.reason}" if e.reason else ""))
        return e.loaded
