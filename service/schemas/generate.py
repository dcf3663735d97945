"""Bodies of text generation: the generate extension (`/v2/models/{m}/generate[_stream]`) and OpenAI's
`/v1/completions` and `/v1/models`.

Ranges that settings decide (ZOOSERVE_GENERATION_MAX_TOKENS, _MAX_PROMPT_CHARS, _MAX_STOP) are checked by
`service.runtime.generation.request.parse` and given in the descriptions; the fixed ones are in the schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from service.runtime.errors import shown
from service.runtime.generation.request import DEFAULT_MAX_TOKENS, MAX_STOP_CHARS
from service.runtime.repository import ModelState
from service.runtime.generation.sampling import MAX_LOGPROBS, SEED_LIMIT
from service.schemas.base import Body

# temperature and repetition_penalty divide the logits. Near 0 (schemathesis sent 5e-324) the quotient
# overflows float64, inf - inf is NaN, and every token drawn is the last of the vocabulary. 1e-4 stays far
# from that, and below any temperature or penalty used in practice.
MIN_DIVISOR = 1e-4


def _greedy_or_scaled(t: float | None) -> float | None:
    if t is not None and 0 < t < MIN_DIVISOR:
        raise ValueError(f"must be 0 (greedy) or at least {MIN_DIVISOR}")
    return t


Temperature = Annotated[float | None, Field(None, ge=0, le=100), AfterValidator(_greedy_or_scaled), WithJsonSchema({
    "anyOf": [{"const": 0}, {"type": "number", "minimum": MIN_DIVISOR, "maximum": 100}, {"type": "null"}],
    "description": "0 is greedy; default 1"})]
_STOP_ONE = {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}
Stop = Annotated[Any, WithJsonSchema({  # checked by the runtime, whose message covers both spellings
    "anyOf": [_STOP_ONE, {"type": "array", "items": _STOP_ONE}, {"type": "null"}],
    "description": "text that ends the generation (not included): one string or a list of at most "
                   "ZOOSERVE_GENERATION_MAX_STOP (4)"})]


class Sampling(Body):
    """The fields both flavours share, under the same names."""

    max_tokens: int | None = Field(None, ge=1, description=f"tokens to generate, default {DEFAULT_MAX_TOKENS}; at "
                                                           "most ZOOSERVE_GENERATION_MAX_TOKENS (512)")
    temperature: Temperature
    top_k: int | None = Field(None, ge=0, description="draw from the k most likely tokens; 0 (default): all")
    top_p: float | None = Field(None, gt=0, le=1, description="draw from the most likely tokens whose probability "
                                                              "reaches p; default 1")
    repetition_penalty: float | None = Field(
        None, ge=MIN_DIVISOR, le=10, description="> 1 makes tokens already in the text less likely; default 1")
    seed: int | None = Field(None, ge=0, lt=SEED_LIMIT, description="the same seed and parameters give the same text; "
                                                                "default random, reported back")
    stop: Stop = None
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS,
                                 description="return each token's log-probability and this many alternatives")


class GenerateRequest(BaseModel):
    """Other top-level fields are ignored, as Triton's generate extension reads them as model inputs."""

    model_config = ConfigDict(strict=True)

    text_input: str = Field(min_length=1, description="the prompt; at most ZOOSERVE_GENERATION_MAX_PROMPT_CHARS "
                                                      "(8000)", examples=["The engineer and the sailor"])
    parameters: Sampling = Sampling()


class TokenAlternative(BaseModel):
    token: str
    id: int
    logprob: float


class TokenLogprob(TokenAlternative):
    top_logprobs: list[TokenAlternative]


class GenerateDetails(BaseModel):
    finish_reason: Literal["stop", "length"] = Field(description="stop: end token or stop sequence; length: "
                                                                 "max_tokens")
    generated_tokens: int = Field(ge=0)
    prompt_tokens: int = Field(ge=0)
    seed: int
    logprobs: list[TokenLogprob] | None = Field(None, description="when the request asked for logprobs")


class GenerateResponse(BaseModel):
    model_name: str
    model_version: str
    text_output: str
    details: GenerateDetails


class GenerateStreamEvent(BaseModel):
    """One token: its new text; the last event also has `details` (without logprobs)."""

    model_name: str
    model_version: str
    text_output: str
    index: int = Field(ge=0)
    logprobs: TokenLogprob | None = None
    details: GenerateDetails | None = None


# -- OpenAI --------------------------------------------------------------------------------------------------

def only(value, why: str):
    """A field OpenAI defines that this server takes only at `value` (or null): refused, not ignored."""

    def check(given):
        if given is not None and given != value:
            raise ValueError(f"must be {shown(value)}: {why}")
        return given

    return Annotated[Any, AfterValidator(check), WithJsonSchema({"enum": [value, None], "description": why}),
                     Field(None)]


class StreamOptions(Body):
    include_usage: bool = Field(False, description="a last chunk, before [DONE], with the usage")


class CompletionRequest(Sampling):
    """OpenAI's completions request. `top_k` and `repetition_penalty` are extensions (the `openai` client's
    `extra_body`); fields OpenAI has and this list lacks are ignored, as before this schema."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="a language model (see GET /v1/models)", examples=["island-lstm"])
    prompt: Annotated[Any, WithJsonSchema({  # checked by the runtime, as text_input is
        "anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string"},
                                                       "minItems": 1, "maxItems": 1}],
        "description": "the prompt, or a list of exactly one", "examples": ["The engineer and the sailor"]})]
    stream: bool | None = Field(None, description="server-sent events, one per token, ending with `data: [DONE]`")
    stream_options: StreamOptions | None = None
    n: only(1, "one choice per request")
    best_of: only(1, "one choice per request")
    echo: only(False, "the prompt is not repeated")
    suffix: only(None, "no insertion")
    logit_bias: only(None, "no logit bias")
    presence_penalty: only(0, "use repetition_penalty")
    frequency_penalty: only(0, "use repetition_penalty")
    user: str | None = Field(None, description="accepted and ignored")


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: CompletionLogprobs | None
    finish_reason: Literal["stop", "length"] | None


class Usage(BaseModel):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str = Field(description="the seed used: seed-N")
    choices: list[CompletionChoice]
    usage: Usage


class CompletionChunk(BaseModel):
    """One streamed token (`choices` has one entry), or with stream_options.include_usage the last chunk
    (`choices` empty, `usage` set)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelEntry(BaseModel):
    id: str
    object: Literal["model"]
    owned_by: str
    version: int
    state: ModelState
    task: str | None = Field(None, description="once loaded")
    family: str | None = Field(None, description="once loaded")
    reason: str | None = Field(None, description="why the version is not ready")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelEntry]
