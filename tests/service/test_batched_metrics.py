"""service.batched_metrics: with several workers, metric updates stay in memory until a flush writes them to
the worker's shared file, exactly (none lost between threads), and once more when the flushing task ends.
prometheus_client picks its value class at import, so the multi-process cases run in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import values

from service import batched_metrics

ROOT = Path(__file__).resolve().parents[2]

# Runs with PROMETHEUS_MULTIPROC_DIR set; prints what the worker's files held at each point.
SCRIPT = """
import asyncio, glob, json, os, sys, threading
from prometheus_client.multiprocess import MultiProcessCollector
from service import batched_metrics, metrics

def in_files():
    files = glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "counter_*.db"))
    return sum(s.value for m in MultiProcessCollector.merge(files, accumulate=True) for s in m.samples
               if s.name == "zooserve_requests_total")

seen = {"enabled": batched_metrics.enabled()}
count = metrics.REQUESTS.labels("m", "/v2/models/{model}/infer", "200")
count.inc()
seen["before flush"] = in_files()
seen["in memory"] = count._value.get()
batched_metrics.flush()
seen["after flush"] = in_files()

def add():
    for _ in range(20000):
        count.inc()
threads = [threading.Thread(target=add) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
batched_metrics.flush()
seen["after 4 threads"] = in_files()

async def ending():
    task = asyncio.create_task(batched_metrics.flush_every(3600))
    await asyncio.sleep(0)
    count.inc(5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
asyncio.run(ending())
seen["after the task ended"] = in_files()
print(json.dumps(seen))
"""


def test_updates_reach_the_shared_file_at_a_flush_and_none_are_lost(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"enabled": True, "before flush": 0, "in memory": 1, "after flush": 1,
                    "after 4 threads": 80001, "after the task ended": 80006}


@pytest.mark.skipif(bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")), reason="this process is in multi-process mode")
def test_one_worker_keeps_prometheus_clients_in_memory_values():
    """Without PROMETHEUS_MULTIPROC_DIR (the tests' own process, as a single worker) nothing is installed."""
    assert not batched_metrics.install()
    assert not batched_metrics.enabled()
    assert values.ValueClass is values.MutexValue
