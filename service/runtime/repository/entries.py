"""The repository's table: each model version's state, why it does not serve (if it does not), and the
served model when it does."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from service.runtime.tasks.base import ServedModel


class ModelState(str, Enum):
    """A model version's state, as the V2 repository extension spells it (a str: JSON shows the value)."""

    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"

    def __str__(self) -> str:  # in messages and logs: "is READY", not "is ModelState.READY"
        return self.value

    __format__ = str.__format__  # f-strings too (Python 3.10 and 3.11 differ here without it)


@dataclass
class Entry:
    name: str
    version: int
    state: ModelState
    reason: str = ""
    served: ServedModel | None = None
    roles: tuple[str, ...] = ()  # the card's further graphs, each served as the model `<name>.<role>`

    def graph(self, role: str) -> Entry:
        """The entry of the further graph `role`: this version's state and reason, the graph's served model."""
        served = self.served.graphs[role] if self.served is not None else None
        return Entry(f"{self.name}.{role}", self.version, self.state, self.reason, served)


class Table(dict):
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
