"""`zooserve serve` (also `zooserve-serve`): run the service with uvicorn, configured by `ZOOSERVE_*` variables
or flags; and `zooserve check-repository`: load every model as the server would, print each one's state."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.settings import Settings

CHECK_HELP = ("Load every model as the server would, print each one's state, and exit (1 if any failed or none "
              "was found).")


async def check_repository(settings: Settings) -> int:
    from service.runtime.repository import ModelRepository, ModelState

    repo = ModelRepository(settings)
    await repo.load_all()
    entries = repo.entries()
    for e in entries:
        provider = e.served.session.provider if e.served else "-"
        print(f"{e.name}/{e.version}: {e.state} {provider} {e.reason}".rstrip())
    await repo.close()
    if not entries:
        print(f"no models found in {settings.repository}")
    return 0 if entries and all(e.state == ModelState.READY for e in entries) else 1


def add_repository_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repository", help="model repository folder, or several separated by ':' (ZOOSERVE_REPOSITORY, default models/)")


def check_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=CHECK_HELP)
    add_repository_argument(p)
    args = p.parse_args(argv)
    # No worker processes here: the flag goes straight to Settings, over the environment.
    overrides = {"repository": args.repository} if args.repository is not None else {}
    from service.settings import Settings

    return asyncio.run(check_repository(Settings(**overrides)))


def main(argv: list[str] | None = None) -> int:
    # The cyclic garbage collector stays off while the service is imported and the models load (hence the
    # imports here, not at the top): that makes ~1M long-lived objects and next to no garbage, and the
    # collections it set off took ~0.2 s of a ~2.3 s start-up. The repository's settle_heap, run once the
    # models are loaded, freezes them and turns the collector back on.
    gc.disable()
    import uvicorn

    from service.settings import Settings

    p = argparse.ArgumentParser(description="Serve the ONNX models of a zooserve model repository.")
    add_repository_argument(p)
    p.add_argument("--host", help="interface (ZOOSERVE_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (ZOOSERVE_PORT, default 8000)")
    p.add_argument("--workers", type=int, help="worker processes (ZOOSERVE_WORKERS, default 1)")
    p.add_argument("--dry-run", action="store_true", help=f"{CHECK_HELP} The same as `zooserve check-repository`.")
    args = p.parse_args(argv)
    # Flags win over the environment; pass them on through it so every worker process sees them.
    for key in ("repository", "host", "port", "workers"):
        if getattr(args, key) is not None:
            os.environ[f"ZOOSERVE_{key.upper()}"] = str(getattr(args, key))
    settings = Settings()
    if args.dry_run:
        return asyncio.run(check_repository(settings))
    if settings.workers > 1:
        gc.enable()  # this process only supervises: the workers are new processes that load the models
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Workers are separate processes: counters must live in shared files to add up in /metrics.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="zooserve-metrics-")
    # ws="none": the service has no WebSocket routes, and uvicorn's "auto" imports a WebSocket library
    # whenever one is installed (wsproto comes with the test tools: 40 ms of start-up).
    options = dict(factory=True, host=settings.host, port=settings.port, workers=settings.workers,
                   log_level=settings.log_level, access_log=False, ws="none",
                   timeout_graceful_shutdown=settings.shutdown_grace_s)
    if settings.workers > 1:  # each worker on a socket of its own: see service.workers
        from service import workers

        workers.run(uvicorn.Config("service.app:factory", **options))
    else:
        uvicorn.run("service.app:factory", **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
