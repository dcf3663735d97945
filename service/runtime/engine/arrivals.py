"""Requests on their way to a model's batcher: what a forming batch may wait for.

The HTTP layer announces a request as soon as it is routed (`Arrivals.announce`, body not yet read); the
batcher marks it arrived when it queues it (`arrived()`, from the request's own context), and the HTTP
layer ends the announcement when the response is done in any case. A batch waits for company only while
some request for its model is on its way (engine.batcher, "Latency policy").
"""

from __future__ import annotations

from contextvars import ContextVar


class Arrivals:
    """Per model name, the requests announced and not yet queued. Keys are dropped at zero, so made-up model
    names in URLs leave nothing behind."""

    def __init__(self):
        self._counts: dict[str, int] = {}

    def enter(self, model: str) -> None:
        self._counts[model] = self._counts.get(model, 0) + 1

    def leave(self, model: str) -> None:
        n = self._counts.get(model, 0) - 1
        if n > 0:
            self._counts[model] = n
        else:
            self._counts.pop(model, None)

    def on_the_way(self, model: str) -> int:
        return self._counts.get(model, 0)

    def __len__(self) -> int:
        """Models with requests on their way."""
        return len(self._counts)

    def announce(self, model: str) -> "Announcement":
        """A request for `model` is on its way; it is the current context's until it arrives or ends."""
        announcement = Announcement(self, model)
        _CURRENT.set(announcement)
        return announcement


class Announcement:
    """One announced request. `end()` is idempotent: the first of arrival and the response's end counts."""

    __slots__ = ("_arrivals", "model", "pending")

    def __init__(self, arrivals: Arrivals, model: str):
        self._arrivals, self.model, self.pending = arrivals, model, True
        arrivals.enter(model)

    def end(self) -> None:
        if self.pending:
            self.pending = False
            self._arrivals.leave(self.model)


_CURRENT: ContextVar[Announcement | None] = ContextVar("zooserve_arrival", default=None)


def arrived() -> None:
    """The current request has been queued (a no-op when it was never announced or has arrived already)."""
    announcement = _CURRENT.get()
    if announcement is not None:
        announcement.end()
