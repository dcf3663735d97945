"""One onnxruntime InferenceSession, checked against its model card, on the best available provider."""

from __future__ import annotations

import logging
import os
import time
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort

from zooserve.card import ModelCard, TensorSpec
from service.runtime.errors import ModelLoadError, shown
from service.settings import Settings

log = logging.getLogger(__name__)

# onnxruntime type strings -> Open Inference Protocol datatypes and numpy dtypes.
ORT_TO_V2 = {
    "tensor(double)": "FP64", "tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(int64)": "INT64",
    "tensor(int32)": "INT32", "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL",
}
V2_TO_NUMPY = {
    "FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32,
    "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "BOOL": np.bool_,
}
DEFAULT_PROVIDERS = ["CUDAExecutionProvider", "CPUExecutionProvider"]
# Thread policy (serving_session_options, repository): a model whose row costs at least this much CPU time
# in a batch is compute-bound and gets every core of its worker; below it, HTTP and JSON parsing (0.15-0.3
# ms of one core per request on the 2-core benchmark machine) cost more than the model, and the event loop,
# a single thread, keeps a core of its own.
COMPUTE_BOUND_ROW_US = 150.0
PROBE_ROWS = 16  # the batch the per-row cost is measured at
# A probe run at this multiple of COMPUTE_BOUND_ROW_US settles the question (OnnxModel.row_cost_us): later
# runs are only ever faster by what a first run allocates (tweets-transformer-int8's first run at 16 x 64
# tokens: 1.5-1.8x its best of three), so the best could not fall below the bound.
PROBE_SETTLED = 2.0
PROBE_SHORT_TOKENS = 8  # text models: the short input tried first
OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def select_providers(requested: list[str] | None, available: list[str]) -> list[str]:
    """The requested providers (default: CUDA, then CPU) that this onnxruntime build has, in order.

    CPU is always last, so a model still loads when a GPU provider is listed but missing.
    """
    wanted = requested or DEFAULT_PROVIDERS
    missing = [p for p in wanted if p not in available]
    if requested and missing:
        log.warning("execution providers %s are not available here (available: %s)", missing, available)
    chosen = [p for p in wanted if p in available]
    return chosen + (["CPUExecutionProvider"] if "CPUExecutionProvider" not in chosen else [])


def session_options(intra_op: int = 0, inter_op: int = 0, level: str = "all") -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = OPT_LEVELS[level]
    opts.intra_op_num_threads = intra_op
    opts.inter_op_num_threads = inter_op
    return opts


def _check_spec(kind: str, spec: TensorSpec, node) -> None:
    got_type = ORT_TO_V2.get(node.type, node.type)
    if got_type != spec.datatype:
        raise ModelLoadError(f"{kind} {shown(spec.name)}: card says {spec.datatype}, graph has {got_type}")
    graph_shape = [d if isinstance(d, int) else -1 for d in node.shape]  # symbolic dims are dynamic
    if len(graph_shape) != len(spec.shape) or any(c != g for c, g in zip(spec.shape, graph_shape)):
        raise ModelLoadError(f"{kind} {shown(spec.name)}: card says shape {spec.shape}, graph has {graph_shape}")


def batchable(card: ModelCard) -> bool:
    """Batching needs a dynamic first axis on every input and output."""
    return all(s.shape and s.shape[0] == -1 for s in (*card.inputs, *card.outputs))


class OnnxModel:
    """A loaded, validated session. `run` is blocking: callers keep it off the event loop."""

    def __init__(self, path: Path, card: ModelCard, *, providers: list[str], options: ort.SessionOptions,
                 blob: bytes | None = None):
        """`blob`: the file's bytes when the caller has read them already (to check their sha256)."""
        if blob is None and not path.is_file():
            raise ModelLoadError(f"{path.name} is missing")
        if any(s.optional for s in card.inputs):
            # An optional input's default is an initializer listed among the graph inputs, which onnxruntime
            # warns about at every load ("will not be treated as constant"): that is the point of it.
            options.log_severity_level = max(options.log_severity_level, 3)
        try:
            self.session = ort.InferenceSession(blob if blob is not None else str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises several private exception types for bad files
            raise ModelLoadError(f"{path.name}: onnxruntime cannot load it: {exc}") from exc
        self.card = card
        self.intra_op_threads = options.intra_op_num_threads
        self.validate()
        self.provider = self.session.get_providers()[0]
        self.input_names = [i.name for i in card.inputs]
        self.output_names = [o.name for o in card.outputs]

    def validate(self) -> None:
        """The card's inputs and outputs must match the graph's names, datatypes and shapes; an optional input
        must be one the graph holds a default for (an initializer that is also a graph input)."""
        required = [s for s in self.card.inputs if not s.optional]
        for kind, specs, nodes in (("input", required, self.session.get_inputs()),
                                   ("output", self.card.outputs, self.session.get_outputs())):
            by_name = {n.name: n for n in nodes}
            if sorted(by_name) != sorted(s.name for s in specs):
                raise ModelLoadError(f"{kind}s: card lists {shown([s.name for s in specs], 400)}, graph has {shown(sorted(by_name), 400)}")
            for spec in specs:
                _check_spec(kind, spec, by_name[spec.name])
        defaults = {n.name: n for n in self.session.get_overridable_initializers()}
        for spec in (s for s in self.card.inputs if s.optional):
            if spec.name not in defaults:
                raise ModelLoadError(f"optional input {shown(spec.name)}: the graph holds no default for it")
            _check_spec("optional input", spec, defaults[spec.name])

    @cached_property
    def batchable(self) -> bool:
        """Asked on every request: cached."""
        return batchable(self.card)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outputs))

    def row_cost_us(self, rows: int = PROBE_ROWS, settled_us: float = float("inf")) -> float:
        """CPU time one row costs in a batch of `rows` (a batchable graph), in microseconds: the process's CPU
        time over a run (every onnxruntime thread's, and not the wall time, which other programs on the
        machine stretch), the best of three, over the rows. The repository loads one model at a time, so
        nothing else in the process runs meanwhile.

        Text inputs are measured at the longest length a request may have. A figure of at least `settled_us`
        ends the measuring early, since it could only ever be an overstatement by what a first run
        allocates: first at PROBE_SHORT_TOKENS tokens (a row costs at least as much at any longer length),
        then with the first run at the longest length. For tweets-transformer-int8 (18 ms a row at 64
        tokens) that is one run of 16 rows x 8 tokens instead of three of 16 x 64: 0.6 s less start-up."""
        longest = getattr(self.card.preprocess, "max_length", None) or 1
        cost = float("inf")
        for length in sorted({min(PROBE_SHORT_TOKENS, longest), longest}):
            cost = self._row_cost_us(rows, length, runs=1 if length < longest else 3, settled_us=settled_us)
            if cost >= settled_us:
                break
        return cost

    def _row_cost_us(self, rows: int, length: int, runs: int, settled_us: float) -> float:
        """The best per-row CPU time of up to `runs` runs at (rows, length), stopping at `settled_us`."""
        feeds = {}
        for s in self.card.inputs:
            if s.optional:
                continue
            shape = [rows if i == 0 else (length if d == -1 else d) for i, d in enumerate(s.shape)]
            dtype = V2_TO_NUMPY[s.datatype]
            # Ones: a valid token id and an attention mask that keeps every position; zeros for images.
            feeds[s.name] = np.ones(shape, dtype) if np.issubdtype(dtype, np.integer) else np.zeros(shape, dtype)
        best = float("inf")
        for _ in range(runs):
            t0 = time.process_time()
            self.run(feeds)
            best = min(best, time.process_time() - t0)
            if best / rows * 1e6 >= settled_us:
                break
        return best / rows * 1e6

    def warmup(self) -> None:
        """One inference at batch 1 with zeros, so the first client does not pay for lazy initialisation:
        without the optional inputs, then (if there are any) with them, since both are served."""
        feeds = {s.name: np.zeros([1 if d == -1 else d for d in s.shape], dtype=V2_TO_NUMPY[s.datatype])
                 for s in self.card.inputs}
        self.run({s.name: feeds[s.name] for s in self.card.inputs if not s.optional})
        if any(s.optional for s in self.card.inputs):
            self.run(feeds)


def core_share(s: Settings) -> int:
    """One worker's share of the usable cores (cores // workers, at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // s.workers)


def serving_session_options(s: Settings, intra_op: int | None = None) -> ort.SessionOptions:
    """onnxruntime options as the server uses them (benchmarks/serve_bench.py builds its raw sessions with this).

    Thread policy (docs/performance.md, "Threads"), when `intra_op_threads` is 0: a session opens with its
    worker's share of the cores (core_share), so N workers do not oversubscribe the machine; the repository
    then measures the model's core time per row (OnnxModel.row_cost_us) and, unless the model is
    compute-bound (COMPUTE_BOUND_ROW_US), opens it again with one thread fewer (`intra_op`), leaving a core
    to the event loop, whose HTTP and parsing cost more than such a model. Idle pool threads sleep instead of
    spinning: a spinning pool takes the core the event loop needs between runs (on 2 cores spinning halved
    LeNet's throughput)."""
    intra = intra_op or s.intra_op_threads or core_share(s)
    opts = session_options(intra, s.inter_op_threads, s.graph_optimization)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts
