"""What the service's Prometheus metrics cost a request, with one worker and with several.

    python benchmarks/metrics_bench.py                # 200,000 requests' updates per repeat, 5 repeats
    python benchmarks/metrics_bench.py --dry-run      # tiny counts: a smoke test in seconds

A V2 infer request updates the metrics of service.metrics the same way on every path: in flight up and
down, its count and duration (service.middleware), the queue depth when it is queued and its wait when its
batch forms (service.runtime.engine.batcher); each batch also sets the depth and observes its size and its
run time, shared here by --batch requests. This script makes exactly those updates in a loop, in a fresh
process per mode, since prometheus_client picks its value class when it is first imported:

one process   no PROMETHEUS_MULTIPROC_DIR: values in memory (a single worker)
write-through PROMETHEUS_MULTIPROC_DIR set, prometheus_client's own multi-process value: every update written
              to the worker's memory-mapped file, after a process-id check (what `--workers N` used before)
batched       PROMETHEUS_MULTIPROC_DIR set, service.batched_metrics: updates in memory, written by its
              flush (called here every --batch requests, far more often than a worker's 50 ms)

Figures: microseconds of one request's updates (the median of --repeats), in this process's CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402  (after the path fix above)
from zooserve import cpu  # noqa: E402

MODES = ("one process", "write-through", "batched")


def child(mode: str, requests: int, batch: int, repeats: int) -> list[float]:
    """In a fresh process (see `measure`): seconds of CPU per request, one figure per repeat."""
    from service import batched_metrics

    if mode == "write-through":  # service.metrics must keep prometheus_client's own value class
        batched_metrics.install = lambda: False
    from service import metrics

    model, endpoint = "fashion-lenet", "/v2/models/{model}/infer"
    count, duration = metrics.REQUESTS.labels(model, endpoint, "200"), metrics.REQUEST_SECONDS.labels(model, endpoint)
    depth, wait = metrics.QUEUE_DEPTH.labels(model), metrics.QUEUE_WAIT.labels(model)
    rows, run = metrics.BATCH_SIZE.labels(model), metrics.INFERENCE_SECONDS.labels(model)
    flush = batched_metrics.flush if batched_metrics.enabled() else (lambda: None)
    out = []
    for _ in range(repeats):
        t0 = time.process_time()
        for i in range(requests):
            metrics.INFLIGHT.inc()
            depth.set(i % batch)
            wait.observe(0.0012)
            if i % batch == 0:
                depth.set(0)
                rows.observe(batch)
                run.observe(0.0003)
                flush()
            metrics.INFLIGHT.dec()
            count.inc()
            duration.observe(0.0021)
        out.append((time.process_time() - t0) / requests)
    return out


def measure(mode: str, requests: int, batch: int, repeats: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with tempfile.TemporaryDirectory() as files:
        if mode != "one process":
            env["PROMETHEUS_MULTIPROC_DIR"] = files
        code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.metrics_bench import child; "
                f"print(json.dumps(child({mode!r}, {requests}, {batch}, {repeats})))")
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                              timeout=600)
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=200_000, help="requests' updates per repeat")
    p.add_argument("--batch", type=int, default=16, help="requests per batch (16: what each of two workers "
                                                         "formed for LeNet at 64 connections)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dry-run", action="store_true", help="2,000 requests, 2 repeats")
    record.add_arguments(p)
    args = p.parse_args(argv)
    if args.dry_run:
        args.requests, args.repeats = 2_000, 2
    per = {m: statistics.median(measure(m, args.requests, args.batch, args.repeats)) for m in MODES}
    lines = [f"metrics_bench: one request's metric updates (batches of {args.batch}), CPU time, medians of "
             f"{args.repeats} x {args.requests:,} requests; {cpu.describe()}", "",
             "| mode | us per request | vs one process |", "|---|---:|---:|"]
    lines += [f"| {m} | {per[m] * 1e6:.2f} | {per[m] / per['one process']:.2f}x |" for m in MODES]
    report = "\n".join(lines)
    print(report)
    record.save_run(args, report, script=__file__, argv=sys.argv[1:] if argv is None else argv,
                    models=["per request"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
