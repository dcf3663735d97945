"""The model repository: scan `<root>/<name>/<version>/`, load, unload and reload models at run time.

There may be several roots (ZOOSERVE_REPOSITORY=models:models-extra); a model name lives in one of them.
A name found in two roots is served from the first and the other is logged as shadowed.

Each version loads on its own: a missing or corrupt file, or a card that disagrees with its graph, makes
that version UNAVAILABLE with the reason kept for the metadata endpoints and the logs; the rest serve.
A reload swaps the new version in first and then drains the old one, so requests already on it finish.

A card's further graphs (`graphs`: a VAE's decoder) load with their version, each file checked and opened
as the main graph is; any of them failing fails the version. They are not rows of the table: the name
`<name>.<role>` resolves to the version's entry (its state, reason and lifetime) and the graph's served model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import onnxruntime as ort

from service import metrics
from service.runtime.engine.arrivals import Arrivals
from service.runtime.engine.session import (COMPUTE_BOUND_ROW_US, PROBE_SETTLED, OnnxModel, batchable,
                                            select_providers, serving_session_options)
from service.runtime.errors import ModelLoadError, ModelNotFound, ModelNotReady, shown
from service.runtime.repository.entries import Entry, ModelState, Table
from service.runtime.repository.files import card_files, graph_card, read_card
from service.runtime.repository.heap import settle_heap
from service.runtime.repository.leases import Lease
from service.runtime.tasks.base import ServedModel
from service.runtime.tasks.registry import served_class
from service.settings import Settings

log = logging.getLogger(__name__)
READY, UNAVAILABLE, LOADING, UNLOADING = ModelState  # the names this module uses


class ModelRepository:
    def __init__(self, settings: Settings, available_providers: list[str] | None = None,
                 arrivals: Arrivals | None = None):
        """`arrivals`: the HTTP layer's announcements, which the models' batchers wait for (engine.arrivals)."""
        self.settings = settings
        self.roots = settings.repository_roots
        self._homes: dict[str, Path] = {}  # model name -> the root it was last found in
        self.providers = select_providers(settings.providers, available_providers or ort.get_available_providers())
        self._entries = Table()
        self._locks: dict[str, asyncio.Lock] = {}
        self._poller: asyncio.Task | None = None
        self.arrivals = arrivals if arrivals is not None else Arrivals()

    # -- discovery -------------------------------------------------------------------------------
    def scan(self) -> dict[str, list[int]]:
        """Model name -> versions on disk (folders with a numeric name), ascending."""
        found: dict[str, list[int]] = {}
        for root in self.roots:
            if not root.is_dir():
                continue
            for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                versions = sorted(int(v.name) for v in model_dir.iterdir() if v.is_dir() and v.name.isdigit())
                if not versions:
                    continue
                if model_dir.name in found:
                    log.error("model %s is in %s and in %s: serving the first", model_dir.name,
                              self._homes[model_dir.name], root)
                    continue
                found[model_dir.name] = versions
                self._homes[model_dir.name] = root
        return found

    def wanted_versions(self, name: str, on_disk: list[int]) -> list[int]:
        pinned = self.settings.model_versions.get(name)
        return [v for v in pinned if v in on_disk] if pinned else on_disk[-1:]

    # -- loading ---------------------------------------------------------------------------------
    def _load_blocking(self, name: str, version: int) -> ServedModel:
        """Read and check the files, open and warm the session, and build the served model the card's task
        and family call for (tasks.registry). Runs in a worker thread."""
        t0 = time.perf_counter()
        folder = self._homes[name] / name / str(version)
        card = read_card(folder, name, version)
        files = card_files(folder, card)
        session = self._open_fitted(folder, card, files)
        graphs = {}
        for g in card.graphs:
            try:
                graphs[g.role] = self._open_fitted(folder, graph_card(card, g.role), files)
            except ModelLoadError as exc:
                raise ModelLoadError(f"the {g.role} graph: {exc}") from exc
        if not session.batchable and card.task == "language-model":
            # Expected: a stepping graph's state is (layers, batch, hidden). Not worth a warning at every start.
            log.info("%s/%s: V2 infer and /score run each request on its own (the state's batch axis is its "
                     "second); generation steps sequences together", name, version)
        elif not session.batchable:
            log.warning("%s/%s: first axis is not dynamic (-1) in every input and output; batching is off", name, version)
        served = served_class(card)(card, session, files=files, settings=self.settings, arrivals=self.arrivals,
                                    graphs=graphs)
        served.load_seconds = time.perf_counter() - t0
        return served

    def _open(self, folder: Path, card, files: dict[str, bytes], options: ort.SessionOptions) -> OnnxModel:
        session = OnnxModel(folder / card.artifact.file, card, providers=self.providers, options=options,
                            blob=files[card.artifact.file])
        try:
            session.warmup()
        except Exception as exc:  # onnxruntime raises its own types: any failure here is this model's alone
            raise ModelLoadError(f"the warm-up inference failed: {type(exc).__name__}: {exc}") from exc
        return session

    def _open_fitted(self, folder: Path, card, files: dict[str, bytes]) -> OnnxModel:
        """The session with the thread policy's count (engine.session.serving_session_options): a compute-bound
        model keeps every core of its worker; any other is opened again with one thread fewer, so that the
        event loop keeps a core of its own. A stepping graph (no batch axis: its per-token work is too small
        to split) opens with one fewer at once, since there is nothing to measure."""
        options = serving_session_options(self.settings)
        share = options.intra_op_num_threads
        if self.settings.intra_op_threads or share <= 1:
            return self._open(folder, card, files, options)
        if not batchable(card):
            log.info("%s/%s: a stepping graph: %d intra-op thread(s), a core left to the event loop", card.name,
                     card.version, share - 1)
            return self._open(folder, card, files, serving_session_options(self.settings, intra_op=share - 1))
        session = self._open(folder, card, files, options)
        if session.provider != "CPUExecutionProvider":
            return session
        try:
            cost = session.row_cost_us(settled_us=PROBE_SETTLED * COMPUTE_BOUND_ROW_US)
        except Exception as exc:  # a graph that cannot run the probe's shapes keeps the default threads
            log.info("%s/%s: no per-row cost (%s); %d intra-op threads", card.name, card.version, exc, share)
            return session
        if cost >= COMPUTE_BOUND_ROW_US:
            log.info("%s/%s: %.0f us of CPU time per row: compute-bound, %d intra-op threads", card.name,
                     card.version, cost, share)
            return session
        log.info("%s/%s: %.0f us of CPU time per row: %d intra-op thread(s), a core left to the event loop",
                 card.name, card.version, cost, share - 1)
        return self._open(folder, card, files, serving_session_options(self.settings, intra_op=share - 1))

    async def load(self, name: str) -> list[Entry]:
        """(Re)load the wanted versions of `name` from disk; unload versions no longer wanted."""
        try:
            return await self._load(name)
        finally:
            settle_heap()

    async def _load(self, name: str, on_disk: list[int] | None = None) -> list[Entry]:
        """`on_disk`: the versions a scan just found (load_all's one scan, instead of one per model)."""
        on_disk = on_disk or self.scan().get(name)
        if not on_disk:
            raise ModelNotFound(f"model {shown(name)} is not in the model repository")
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
        """Load one version. A reload of a serving version swaps the new copy in and drains the old one; if
        the new copy fails to load, the old one keeps serving and the failure is the returned entry's reason
        (the table keeps the serving entry, with the failure noted)."""
        key = (name, version)
        old = self._entries.get(key)
        serving = old.served if old and old.state == READY else None
        if serving is None:
            self._entries[key] = Entry(name, version, LOADING, roles=old.roles if old else ())
        try:
            served = await asyncio.to_thread(self._load_blocking, name, version)
        except ModelLoadError as exc:
            log.error("model %s/%s failed to load: %s", name, version, exc)
            if serving is not None:
                note = f"the last reload failed, the copy loaded before serves: {exc}"
                self._entries[key] = Entry(name, version, READY, note, served=serving, roles=old.roles)
                return Entry(name, version, UNAVAILABLE, str(exc))
            self._entries[key] = entry = Entry(name, version, UNAVAILABLE, str(exc), roles=self._roles(name, version))
            self._ready_gauges(entry, 0)
            return entry
        served.start()
        self._entries[key] = entry = Entry(name, version, READY, served=served, roles=tuple(served.graphs))
        self._ready_gauges(entry, 1)
        metrics.MODEL_LOAD_SECONDS.labels(name, str(version)).set(served.load_seconds)
        for e in (entry, *map(entry.graph, entry.roles)):
            metrics.MODEL_THREADS.labels(e.name, str(version)).set(e.served.session.intra_op_threads)
        log.info("model %s/%s ready on %s in %.3fs", name, version, served.session.provider, served.load_seconds)
        if serving is not None:
            await serving.drain_and_stop()  # requests holding the old copy finish first
        return entry

    async def _drop(self, name: str, version: int, *, keep_as: str | None = None) -> None:
        """Drain and release a version; forget it, or (with `keep_as`) keep it listed as UNAVAILABLE."""
        entry = self._entries.get((name, version))
        if entry is None:
            return
        self._entries[(name, version)] = Entry(name, version, UNLOADING, roles=entry.roles)
        if entry.served:
            await entry.served.drain_and_stop()
        if keep_as is None:
            del self._entries[(name, version)]
        else:
            self._entries[(name, version)] = Entry(name, version, UNAVAILABLE, keep_as, roles=entry.roles)
        self._ready_gauges(entry, 0)

    def _roles(self, name: str, version: int) -> tuple[str, ...]:
        """The further graphs a version's card lists, if its card can be read (for a version that failed)."""
        try:
            return tuple(g.role for g in read_card(self._homes[name] / name / str(version), name, version).graphs)
        except ModelLoadError:
            return ()

    @staticmethod
    def _ready_gauges(entry: Entry, value: int) -> None:
        for name in (entry.name, *(f"{entry.name}.{r}" for r in entry.roles)):
            metrics.MODEL_READY.labels(name, str(entry.version)).set(value)

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
        """One model at a time: each measures its cost per row for the thread policy with nothing else running
        in the process, and the peak RSS stays lower (the default repository: ~270 MB one by one, ~300 MB all
        at once, for ~0.15 s more before ready on 2 cores)."""
        for name, versions in self.scan().items():
            await self._load(name, versions)
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
    def entries(self, *, graphs: bool = False) -> list[Entry]:
        """Every model version; with `graphs`, each followed by its further graphs' (`<name>.<role>`)."""
        found = [self._entries[k] for k in sorted(self._entries)]
        return [x for e in found for x in (e, *map(e.graph, e.roles))] if graphs else found

    def knows(self, name: str) -> bool:
        return name in self._entries.by_name or bool(self._graph_entries(name))

    def _graph_entries(self, name: str) -> list[Entry]:
        """`<model>.<role>`: the versions of `model` that have the further graph `role`, as that graph's entries."""
        model, dot, role = name.rpartition(".")
        return [e.graph(role) for e in self._entries.by_name.get(model, ()) if role in e.roles] if dot else []

    def _of(self, name: str) -> list[Entry]:
        """`name`'s entries, oldest version first (the index's own list: not to be changed)."""
        found = self._entries.by_name.get(name) or self._graph_entries(name)
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

    def get(self, name: str, version: int | None = None) -> ServedModel:
        """The serving model version, or ModelNotFound (404) / ModelNotReady (503). Requests use `acquire`."""
        e = self.entry(name, version)
        if e.state != READY or e.served is None:
            raise ModelNotReady(f"model {shown(name)} version {e.version} is {e.state}" + (f": {e.reason}" if e.reason else ""))
        return e.served

    def acquire(self, name: str, version: int | None = None) -> Lease:
        """`async with repo.acquire(name, version) as model:` the model cannot be drained until the block ends.
        The lookup happens here, so a 404 or 503 is raised before the block starts."""
        return Lease(self.get(name, version))
