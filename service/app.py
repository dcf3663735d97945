"""The app factory: `create_app(settings)` wires settings, the model repository, routers and middleware.

Nothing happens at import time; models load in the lifespan, when the server starts.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service import __version__, batched_metrics, docs, http_errors
from zooserve import cpu
from service.logs import configure_logging
from service.fastpath import FastPath
from service.middleware import AdminOnly, Announce, ApiKey, BodyLimit, RequestMetrics
from service.routers import (cards, classify, completions, embed, generate, health, infer, metrics, models,
                             playground, reconstruct, repository, sample, score)
from service.runtime.engine.arrivals import Arrivals
from service.runtime.repository import ModelRepository
from service.settings import Settings
from service.shutdown import delay_sigterm

log = logging.getLogger(__name__)
DESCRIPTION = ("Serves ONNX models from a model repository: the Open Inference Protocol v2 (with Triton's binary "
               "tensor, classification and repository extensions), the generate extension, OpenAI-compatible "
               "completions, and task endpoints to classify images and texts, to score texts, and to sample, reconstruct "
               "and embed images.")


class Service(FastAPI):
    """FastAPI with the service's middleware (`front`, outermost first) outside FastAPI's own stack.

    Why: FastAPI wraps every request in its own layers (server errors, exceptions, telemetry, body limit,
    exit stacks). The hot endpoints that service.fastpath answers need none of them, and under load on 2
    cores those layers cost more of the event loop's time per LeNet request than our whole batching path
    (benchmarks/serve_bench.py, docs/performance.md). Everything FastPath passes on still goes through them.
    Starlette builds the stack once, at the first request, as it does for `add_middleware`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.front: list[tuple[type, dict]] = []

    def build_middleware_stack(self):
        app = super().build_middleware_stack()
        for cls, options in reversed(self.front):
            app = cls(app, **options)
        return app


def create_app(settings: Settings | None = None, *, available_providers: list[str] | None = None) -> Service:
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    arrivals = Arrivals()  # requests on their way to a batcher: announced by HTTP, awaited by batches
    repo = ModelRepository(settings, available_providers, arrivals)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # A model thread returning from onnxruntime needs the GIL back, and a busy event loop holds it until
        # the switch interval runs out: at Python's 5 ms, ResNet's batch thread sat idle ~2 ms between
        # batches of 32 at 64 clients (benchmarks/serve_bench.py); at 100 us, ~0.5 ms.
        sys.setswitchinterval(settings.gil_switch_interval_us / 1e6)
        # With several workers, this worker's metric values reach the shared files in batches.
        flusher = asyncio.create_task(batched_metrics.flush_every()) if batched_metrics.enabled() else None
        try:
            # The CPU level decides onnxruntime's kernels and so the speed (INT8 graphs answer the same
            # everywhere).
            log.info("loading models from %s with providers %s on %s", settings.repository, repo.providers,
                     cpu.describe())
            await repo.load_all()
            app.state.started = True
            delay_sigterm(app.state, settings.shutdown_drain_s)
            repo.start_polling()
            yield
            await repo.close()
        finally:
            if flusher is not None:
                flusher.cancel()  # it flushes once more as it ends
                await asyncio.gather(flusher, return_exceptions=True)

    # Response schemas in validation mode: a field with a default may be left out, as the routes' answers do.
    # FastAPI's native OpenTelemetry hooks off: the service reports Prometheus metrics, and asking whether a
    # tracer, meter or logger provider is configured cost every request three lookups (~10 us of 0.2 ms).
    app = Service(title="zooserve", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, separate_input_output_schemas=False,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.settings, app.state.repository, app.state.started, app.state.draining = settings, repo, False, False
    for r in (health.router, models.router, infer.router, repository.router, classify.router, score.router,
              sample.router, reconstruct.router, embed.router, generate.router, completions.router, metrics.router,
              cards.router):
        app.include_router(r)
    if settings.playground:
        app.include_router(playground.router)
    http_errors.install(app)
    docs.install(app, settings)
    # The service's own middleware, outermost first: metrics see every response, including 401 and 413.
    # Innermost: the hot POST endpoints in pure ASGI, inside the announcements of requests on their way to a
    # batcher (after the key check: a refused request is not waited for).
    front = [(RequestMetrics, {"repository": repo}), (BodyLimit, {"max_bytes": settings.max_body_bytes})]
    if settings.cors_origins:  # outside the key check: preflights carry no key, and a 401 needs CORS headers too
        front.append((CORSMiddleware, {"allow_origins": settings.cors_origins, "allow_methods": ["*"],
                                       "allow_headers": ["*"]}))
    if settings.api_key:
        front.append((ApiKey, {"key": settings.api_key}))
    front += [(AdminOnly, {"admin_key": settings.admin_key if settings.repository_control else None}),
              (Announce, {"arrivals": arrivals}), (FastPath, {"state": app.state})]
    app.front = front
    return app


def factory() -> FastAPI:
    """Entry point for `uvicorn --factory service.app:factory`: settings from the environment."""
    return create_app(Settings())
