"""The generate task: check a request's parameters, turn the prompt into ids, submit it to the model's
scheduler, and turn sampled ids back into text, holding back text that may begin a stop sequence.

Both HTTP flavours (the generate extension and OpenAI /v1/completions) call `parse` and `Generation`; they
differ only in field names and the shape of their answers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from service.runtime.generation import sampling
from service.runtime.errors import BadInput, ClientDisconnected, shown
from service.runtime.generation.sequence import Event, Sequence
from service.settings import Settings
from zooserve.text import Vocab, word_tokens

DEFAULT_MAX_TOKENS = 16  # as OpenAI's completions
MAX_STOP_CHARS = 100
SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "repetition_penalty", "seed")
PARAMETERS = ("max_tokens", "stop", "logprobs", *SAMPLING_FIELDS)
ATTACH_LEFT = frozenset(",.!?;:)]}\u201d\u2019%")  # word tokens written without a space before them
OPENERS = frozenset("([{\u201c\u2018")  # ... and after these


async def disconnected(receive: Callable[[], Awaitable[dict]]) -> None:
    """Return when the ASGI receive channel (the request body already read) says the client has gone."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(work: Awaitable, receive: Callable[[], Awaitable[dict]],
                              on_leave: Callable[[], None]) -> bool:
    """Run `work` while watching the request's ASGI channel -> True when it finished (its exception, if any,
    raised here), False when the client left first: then `on_leave()` runs at once (a generation's slot is
    free from then on, not only once `work` has unwound) and `work` is cancelled. Also when this request's
    own task is cancelled."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(disconnected(receive))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            on_leave()
            task.cancel()
    if not task.done():
        return False
    task.result()
    return True


@dataclass(frozen=True)
class GenRequest:
    prompt: str
    sampling: sampling.SamplingParams
    max_tokens: int
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # None: no per-token log-probabilities; k: each with its k best alternatives


def parse(prompt, params: dict, settings: Settings, *, prompt_field: str) -> GenRequest:
    """Check every field; a BadInput names the field, what it must be and what came."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadInput(f'"{prompt_field}" must be a non-empty string, got {shown(prompt)}')
    if len(prompt) > settings.generation_max_prompt_chars:
        raise BadInput(f'"{prompt_field}" has {len(prompt)} characters; the limit is {settings.generation_max_prompt_chars}')
    cap = settings.generation_max_tokens
    max_tokens = params.get("max_tokens")
    max_tokens = min(DEFAULT_MAX_TOKENS, cap) if max_tokens is None else max_tokens
    if not sampling.is_int(max_tokens) or not 1 <= max_tokens <= cap:
        raise BadInput(f'"max_tokens" must be an integer from 1 to {cap}, got {shown(max_tokens)}')
    stop = params.get("stop")
    stop = () if stop is None else (stop,) if isinstance(stop, str) else stop
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) and s for s in stop):
        raise BadInput(f'"stop" must be a non-empty string or a list of them, got {shown(stop)}')
    if len(stop) > settings.generation_max_stop:
        raise BadInput(f'"stop" has {len(stop)} sequences; at most {settings.generation_max_stop} are allowed')
    if any(len(s) > MAX_STOP_CHARS for s in stop):  # each token checks every prefix: keep that cheap
        raise BadInput(f'"stop" sequences are at most {MAX_STOP_CHARS} characters, got {max(map(len, stop))}')
    logprobs = params.get("logprobs")
    given = {k: params[k] for k in SAMPLING_FIELDS if params.get(k) is not None}
    sp = sampling.SamplingParams(**given, logprobs=logprobs)  # checks the ranges
    return GenRequest(prompt, sp, int(max_tokens), tuple(stop), None if logprobs is None else int(logprobs))


class Detokenizer:
    """Ids -> text deltas. Char models write each character; word models join words with spaces (none
    before closing punctuation or after an opening one). With stop sequences, the text that could be the
    start of one is held back until it is known not to be."""

    def __init__(self, vocab: Vocab, texts: tuple[str, ...], stop: tuple[str, ...], prompt: str):
        self.vocab, self.texts, self.stop, self.held = vocab, texts, stop, ""
        self.prev = None if vocab.kind == "char" or prompt[-1].isspace() else (word_tokens(prompt)[-1:] or [None])[0]

    def _piece(self, token: int) -> str:
        word = self.texts[token]
        if self.vocab.kind == "char":
            return word
        space = self.prev is not None and word not in ATTACH_LEFT and self.prev not in OPENERS
        self.prev = word
        return " " + word if space else word

    def push(self, token: int) -> tuple[str, bool]:
        self.held += self._piece(token)
        if not self.stop:
            text, self.held = self.held, ""
            return text, False
        hits = [i for i in (self.held.find(s) for s in self.stop) if i >= 0]
        if hits:
            text, self.held = self.held[:min(hits)], ""
            return text, True
        keep = max((k for s in self.stop for k in range(1, len(s)) if self.held.endswith(s[:k])), default=0)
        text, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        return text, False

    def flush(self) -> str:
        text, self.held = self.held, ""
        return text


def token_logprobs(texts: tuple[str, ...], choice: sampling.Choice) -> dict:
    return {"token": texts[choice.token], "id": choice.token, "logprob": choice.logprob,
            "top_logprobs": [{"token": texts[t], "id": t, "logprob": lp} for t, lp in choice.top]}


class Generation:
    """One request submitted to a language model's scheduler (which may refuse it: Overloaded, 503).
    `model`: the served language model (tasks.language_model), with its `scheduler` and `vocab`."""

    def __init__(self, model, req: GenRequest):
        sched = model.scheduler
        self.model, self.req, self.texts = model, req, sched.stepper.texts
        ids, self.prompt_tokens = sched.stepper.encode(req.prompt)
        rng, self.seed = sampling.generator(req.sampling.seed)
        self.scheduler = sched
        self.seq = sched.submit(Sequence(ids, req.sampling, rng, max_tokens=req.max_tokens,
                                         pipeline=Detokenizer(model.vocab, self.texts, req.stop, req.prompt)))

    def batches(self) -> AsyncIterator[list[Event]]:
        return self.scheduler.batches(self.seq)

    def close(self) -> None:
        """The response is over: a sequence still running (its client left) stops before the next step."""
        if not self.seq.done:
            self.scheduler.cancel(self.seq)

    async def collect(self, receive: Callable[[], Awaitable[dict]]) -> tuple[str, str, list[Event]]:
        """The whole answer: text, finish reason, and each token's event. `receive`: the request's ASGI
        channel, watched meanwhile: a client that disconnects frees the sequence's slot before the next step
        (it would otherwise generate to max_tokens for nobody), and ClientDisconnected is raised."""
        events: list[Event] = []

        async def gather() -> None:
            async for batch in self.batches():
                events.extend(batch)

        if not await unless_disconnected(gather(), receive, self.close):  # a generation error is raised here
            raise ClientDisconnected("the client disconnected before the answer was ready")
        return "".join(e.text for e in events), events[-1].finish, events

    def details(self, finish: str, generated: int) -> dict:
        return {"finish_reason": finish, "generated_tokens": generated, "prompt_tokens": self.prompt_tokens,
                "seed": self.seed}
