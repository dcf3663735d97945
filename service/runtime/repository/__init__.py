"""The model repository: what is on disk, what serves, and leases on what serves."""

from service.runtime.repository.entries import Entry, ModelState
from service.runtime.repository.leases import Lease
from service.runtime.repository.heap import settle_heap
from service.runtime.repository.repository import ModelRepository

__all__ = ["Entry", "Lease", "ModelRepository", "ModelState", "settle_heap"]
