"""Service settings: one typed object, read from `ZOOSERVE_*` environment variables (or a `.env` file).

Built once by the launcher (or a test) and passed to `create_app(settings)`; nothing reads the
environment anywhere else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from zooserve.card import repository_roots


class BatchingOverride(BaseSettings):
    max_batch_size: int | None = Field(None, ge=1, description="rows per formed batch")
    max_delay_ms: float | None = Field(None, ge=0, description="longest a request waits for company")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZOOSERVE_", env_file=".env", env_nested_delimiter="__",
                                      extra="ignore")

    host: str = Field("127.0.0.1", description="interface to listen on (0.0.0.0 in containers)")
    port: int = Field(8000, ge=1, le=65535, description="TCP port")
    workers: int = Field(1, ge=1, description="uvicorn worker processes; each loads every model")
    repository: str = Field(
        "models", description="model repository: <name>/<version>/model.onnx + model.json; several folders separated by "
        "':' (as Triton takes several --model-repository), each model name in one of them only")
    model_versions: dict[str, list[int]] = Field(
        default_factory=dict, description='versions to load per model, e.g. {"fashion-lenet": [1, 2]}; default: the newest')
    poll_interval_s: float = Field(0.0, ge=0, description="rescan the repository for new versions this often; 0 = never")
    providers: list[str] | None = Field(
        None, description="onnxruntime execution providers in order of preference; default: CUDA if available, then CPU")
    intra_op_threads: int = Field(0, ge=0, description="threads inside one operator; 0 = the worker's share of the "
                                                       "usable cores (cores // workers, at least 1)")
    inter_op_threads: int = Field(0, ge=0, description="threads across operators; 0 = onnxruntime's default")
    gil_switch_interval_us: float = Field(
        100.0, gt=0, description="how long a thread may wait for the GIL before it asks the holder to let go "
        "(Python's default is 5000); onnxruntime threads hand results back to the event loop sooner")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field("all", description="onnxruntime graph optimisation level")
    max_batch_size: int | None = Field(None, ge=1, description="default rows per batch; default: each card's hint")
    max_delay_ms: float | None = Field(None, ge=0, description="default batching delay; default: each card's hint")
    batching: dict[str, BatchingOverride] = Field(default_factory=dict, description="per-model batching overrides")
    max_queue: int = Field(256, ge=1, description="requests waiting per model before new ones get 503")
    request_timeout_s: float = Field(30.0, gt=0, description="a request not started by then is dropped with 504")
    max_sequence_tokens: int = Field(
        4096, ge=1, description="longest token sequence a recurrent language model takes in one V2 infer request "
        "(its buffers and time grow with it; /score reads longer texts in chunks)")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="larger request bodies get 413")
    api_key: str | None = Field(None, description="when set, every route but health, metrics and the playground's "
                                                   "static files needs it (Bearer or X-API-Key)")
    repository_control: bool = Field(
        False, description="allow load and unload (POST /v2/repository/models/{m}/load|unload); off (the default, "
        "as Triton's model-control mode none), they answer 403. Needs admin_key")
    admin_key: str | None = Field(None, description="the key load and unload need (Bearer or X-Admin-Key), and only "
                                                     "they; it must differ from api_key")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS; empty = CORS off")
    playground: bool = Field(True, description="serve the playground page at /ui (GET / redirects there), which tries "
                             "every model through this API; false for API-only deployments (/ui answers 404)")
    generation_max_tokens: int = Field(512, ge=1, description="largest max_tokens a generate or completions request may ask for")
    generation_max_prompt_chars: int = Field(8000, ge=1, description="longer prompts get 400")
    generation_max_stop: int = Field(4, ge=0, description="most stop sequences a request may give")
    generation_max_active: int = Field(64, ge=1, description="sequences one language model steps together; more wait")
    generation_max_waiting: int = Field(256, ge=0, description="sequences waiting per language model before new ones get 503")
    generation_prompt_cache: int = Field(
        256, ge=0, description="prompts per recurrent language model whose state after reading them is kept, so that "
        "one sent again skips its prefill (least recently used dropped; about 4 KB each for island-lstm); 0 = off")
    shutdown_drain_s: float = Field(
        5.0, ge=0, description="after SIGTERM, readiness is 503 but requests are still served this long (load "
        "balancers take a few seconds to notice)")
    shutdown_grace_s: float = Field(20.0, ge=0, description="then in-flight requests and streams get this long to "
                                                            "finish before the process exits")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    log_format: Literal["text", "json"] = Field("text", description="log line format")

    def batching_for(self, model: str, card_max_batch: int, card_delay_ms: float) -> tuple[int, float]:
        """Per-model override, else the global setting, else the card's hint."""
        o = self.batching.get(model, BatchingOverride())
        size = o.max_batch_size or self.max_batch_size or card_max_batch
        delay = next(v for v in (o.max_delay_ms, self.max_delay_ms, card_delay_ms) if v is not None)
        return size, delay

    @field_validator("repository", mode="before")
    @classmethod
    def _folders(cls, v):
        """A Path or a list of folders, as tests and callers give them, in the environment's one-string form."""
        if isinstance(v, (list, tuple)):
            return os.pathsep.join(str(p) for p in v)
        return str(v) if isinstance(v, Path) else v

    @property
    def repository_roots(self) -> list[Path]:
        return repository_roots(self.repository)

    @model_validator(mode="after")
    def _control_needs_its_own_key(self):
        if self.repository_control and not self.admin_key:
            raise ValueError("repository_control needs an admin_key (ZOOSERVE_ADMIN_KEY): anyone who reaches the "
                             "port could unload every model otherwise")
        if self.admin_key and self.admin_key == self.api_key:
            raise ValueError("admin_key must differ from api_key: inference clients must not control the repository")
        return self
