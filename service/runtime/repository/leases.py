"""`Lease`: a request's hold on a served model, from its lookup until its work is queued.

    async with repo.acquire("fashion-lenet") as model:
        outputs = await model.infer(inputs, timeout_s=5)

A reload or unload takes the old version out of the table first (no new leases), then drains it once its
leases are over (`ServedModel.drain_and_stop` waits on an event). Work already queued is the engine's to
finish: the batcher and the scheduler drain what they hold before they stop.
"""

from __future__ import annotations

from service.runtime.tasks.base import ServedModel


class Lease:
    __slots__ = ("model", "_held")

    def __init__(self, model: ServedModel):
        self.model = model
        self._held = True
        model.leases.take()

    def release(self) -> None:
        """Idempotent: the first call gives the lease back."""
        if self._held:
            self._held = False
            self.model.leases.give_back()

    async def __aenter__(self) -> ServedModel:
        return self.model

    async def __aexit__(self, *exc) -> None:
        self.release()
