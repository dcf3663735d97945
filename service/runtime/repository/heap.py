"""The process heap after models (re)load: freeze what lives on, hand free pages back to the OS."""

from __future__ import annotations

import ctypes
import functools
import gc

# Container allocations between young-generation collections (Python's default is 700). A V2 JSON request
# allocates ~35 containers, so the default ran a young collection every ~20 requests at ~0.1-0.2 ms each:
# 2.7% of the event loop's time at 64 LeNet clients, against 0.15% at 10,000 (gc.callbacks, AVX2 EPYC). The
# cost: cyclic garbage (an exception's traceback and the frames it holds) waits longer to be freed, a few MB
# at most. Older generations keep their default ratios.
YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Freeze what is alive once models are (re)loaded: their cards, vocabularies and the sessions' Python
    side leave the cyclic GC's generations, so its full collections scan per-request garbage only. Each
    used to walk every loaded object: p99 at 64 LeNet clients 30 ms -> 10 ms (benchmarks/serve_bench.py).
    Unfreezing first lets this collection reclaim cycles left by versions that were unloaded. At start-up
    the server runs with the collector off (service.cli) and nothing has been unloaded: the objects are
    frozen without a collection (~70 ms of a full pass for ~10 objects), and the collector turned on, with
    the young generation collected every YOUNG_THRESHOLD allocations."""
    starting = not gc.isenabled()
    gc.unfreeze()
    if not starting:
        gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    gc.enable()
    _trim_heap()


@functools.cache
def _libc():
    return ctypes.CDLL("libc.so.6")


def _trim_heap() -> None:
    """Hand the heap's free pages back to the OS (glibc's malloc_trim). Sessions that were opened and then
    dropped (a reload's old version; the thread policy's first try) leave their tables' memory free but
    still counted in RSS: island-ngram-char's 120 MB of lookup tables, opened twice, stayed as +221 MB."""
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
        pass
