"""One generation request as the scheduler steps it (`Sequence`), and what its consumer receives (`Event`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.runtime.generation import sampling
from service.runtime.errors import ServiceError


class TextPipeline(Protocol):  # may also have `stop`, its stop sequences: with none, see Sequence.text_on_worker
    def push(self, token: int) -> tuple[str, bool]: ...  # -> (text to emit now, a stop sequence was hit)

    def flush(self) -> str: ...  # text held back (a possible stop-sequence prefix) that is safe at the end


@dataclass(slots=True)
class Event:
    """One token for a sequence's consumer, or the error that ended it."""

    token: int  # -1 for an error
    text: str | None  # None until the event loop renders it (see Scheduler._put)
    finish: str | None = None  # "stop" (end token or stop sequence), "length" (max_tokens), or "error"
    choice: sampling.Choice | None = None  # the token's log-probabilities, when the request asked for them
    error: ServiceError | None = None


class Sequence:
    def __init__(self, ids: np.ndarray, params: sampling.SamplingParams, rng: np.random.Generator, *,
                 max_tokens: int, pipeline: TextPipeline):
        self.ids, self.params, self.rng, self.max_tokens, self.pipeline = ids, params, rng, max_tokens, pipeline
        self.draws = sampling.Uniforms(rng)  # the generator's numbers, drawn in blocks
        # Events for the consumer (event loop only): a list and one future to wake it, cheaper than an
        # asyncio.Queue's put/get per token.
        self.events: list[Event] = []
        self.waiter: asyncio.Future | None = None
        self.cancelled = self.done = False
        # Tokens made, state and pending token: while the sequence is in a batch, the batch holds them
        # (batch.Batch); they are up to date here once it leaves.
        self.generated = 0
        self.state, self.pending = None, -1
        # Without stop sequences only the end token and max_tokens end a sequence, which the worker tells
        # without the text; the event loop then turns tokens into text, off the worker's per-step path.
        self.text_on_worker = bool(getattr(pipeline, "stop", True))
        # Only a repetition penalty reads the history: prompt and generated ids.
        self.history: list[int] | None = ids.tolist() if params.repetition_penalty != 1.0 else None
        self.t_queued = time.perf_counter()
        self.t_first = 0.0
