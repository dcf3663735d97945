"""Every Prometheus metric the service exports, declared once at import.

With several uvicorn workers the launcher sets PROMETHEUS_MULTIPROC_DIR before this module is first
imported, so prometheus-client writes each worker's values to shared files and `/metrics` adds them up
(counters and histograms sum; gauges use the mode given below). Those values reach the files in batches
(service.batched_metrics), at most 50 ms late.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import REGISTRY, multiprocess

from service import batched_metrics

batched_metrics.install()  # before any metric is declared: each one's values take the class installed here

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

REQUESTS = Counter("zooserve_requests_total", "HTTP requests handled, by model, route and status code.",
                   ["model", "endpoint", "code"])
REQUEST_SECONDS = Histogram("zooserve_request_duration_seconds", "Time from request received to response ready.",
                            ["model", "endpoint"], buckets=_LATENCY)
INFLIGHT = Gauge("zooserve_inflight_requests", "HTTP requests being handled right now.", multiprocess_mode="livesum")
QUEUE_WAIT = Histogram("zooserve_queue_wait_seconds", "Time a request waited in its model's batching queue.",
                       ["model"], buckets=_LATENCY)
QUEUE_DEPTH = Gauge("zooserve_queue_depth", "Requests waiting in a model's batching queue.", ["model"],
                    multiprocess_mode="livesum")
BATCH_SIZE = Histogram("zooserve_batch_size", "Rows in each batch the dynamic batcher formed.", ["model"],
                       buckets=_ROWS)
INFERENCE_SECONDS = Histogram("zooserve_inference_duration_seconds", "onnxruntime compute time per formed batch.",
                              ["model"], buckets=_LATENCY)
MODEL_READY = Gauge("zooserve_model_ready", "1 when a model version is loaded and serving, else 0.",
                    ["model", "version"], multiprocess_mode="livemin")
MODEL_LOAD_SECONDS = Gauge("zooserve_model_load_duration_seconds", "Time the last load of a model version took.",
                           ["model", "version"], multiprocess_mode="max")
MODEL_THREADS = Gauge("zooserve_model_intra_op_threads", "onnxruntime intra-op threads of a model version's "
                      "session (the thread policy's choice, docs/performance.md).", ["model", "version"],
                      multiprocess_mode="max")
# Text models: positions the requests brought, and positions the batcher padded to the longest row of a batch.
TOKENS = Counter("zooserve_tokens_total", "Token positions the requests sent to a text model (their own length).",
                 ["model"])
PADDING_TOKENS = Counter("zooserve_padding_tokens_total",
                         "Padding positions the batcher added to fill each formed batch to its longest row.", ["model"])

_TOKEN_LATENCY = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
TIME_TO_FIRST_TOKEN = Histogram("zooserve_time_to_first_token_seconds",
                                "Time from a generation request queued to its first token sampled.", ["model"],
                                buckets=_LATENCY)
TIME_PER_OUTPUT_TOKEN = Histogram("zooserve_time_per_output_token_seconds",
                                  "Mean time between a sequence's tokens after the first, one value per sequence.",
                                  ["model"], buckets=_TOKEN_LATENCY)
GENERATED_TOKENS = Counter("zooserve_generated_tokens_total", "Tokens sampled by the generation schedulers.", ["model"])
GEN_ACTIVE = Gauge("zooserve_generation_active_sequences", "Sequences a language model is stepping right now.",
                   ["model"], multiprocess_mode="livesum")
GEN_WAITING = Gauge("zooserve_generation_waiting_sequences", "Sequences queued for a free generation slot.",
                    ["model"], multiprocess_mode="livesum")
GEN_STEP_BATCH = Histogram("zooserve_generation_step_batch_size",
                           "Sequences given a token together: in each generation step, and in each prefill (their "
                           "first tokens).", ["model"], buckets=_ROWS)
PROMPT_CACHE = Counter("zooserve_generation_prompt_cache_total",
                       "Prompts a recurrent language model's prefill took, by result: hit (its state came from the "
                       "prompt cache or an identical prompt in the same prefill) or miss (the graph read it).",
                       ["model", "result"])


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric, summed over worker processes when there are several."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        batched_metrics.flush()  # this worker's own updates, up to now
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
