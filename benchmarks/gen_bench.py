"""Generation benchmark: zooserve's streaming generation against raw onnxruntime stepping, in one run.

    python benchmarks/gen_bench.py                 # island-lstm and island-lstm-int8, 1 / 8 / 32 streams
    python benchmarks/gen_bench.py --dry-run       # tiny counts: a smoke test in seconds

raw       this process steps the graph itself: one token per row per step, the state fed back, at batch
          B = the number of streams (no sampling, no HTTP): the compute ceiling, in rows (tokens) per second.
zooserve  `python -m service.cli` in a subprocess on 127.0.0.1; C concurrent clients (asyncio streams, in
          this process) each stream POST /v2/models/{m}/generate_stream with --tokens tokens (temperature
          1, a different seed each); aggregate tokens/s = all streams' tokens / wall time.

Per-token latency = a stream's time per output token (from its first chunk to its end, over its tokens
after the first; median over streams), next to one raw step at the same batch size. Every figure
is the median of --repeats rounds. A round measures every model at every stream count, raw stepping
right before its zooserve run, and each ratio is the median of the rounds' own ratios: the speed of a
shared virtual machine drifts by a quarter within seconds, and a ratio of two figures taken seconds
apart would carry that drift. The server and the clients share the machine's cores (and whatever else
runs on it): read the ratios.

Both sides use the server's onnxruntime session options (`serving_session_options`, so its thread policy
too) built from the same settings; --threads sets the intra- and inter-op threads of both.

Targets (issue 16), printed ok or MISS: at the most streams, zooserve reaches >= 0.8x raw stepping at that
batch; one stream's time per token is <= 1.3x a raw B=1 step; and an INT8 model (`<name>-int8`, run with
`<name>`) gives >= 1.5x the float model's tokens/s at the most streams wherever its raw step there is
>= 1.5x faster (n.a. elsewhere: INT8 speed depends on the CPU's level, see zooserve.cpu).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402  (after the path fix above)
from zooserve import cpu  # noqa: E402
from tests.service.serve_fixture import running_server  # noqa: E402

# >=, <=, and >= where the raw INT8 step is at least INT8_RAW_GATE times the float one's speed
TARGETS = {"streams32_vs_raw32": 0.8, "latency1_vs_raw1": 1.3, "int8_vs_float32": 1.5}
INT8_RAW_GATE = 1.5


def server_env(threads: int | None, max_active: int) -> dict[str, str]:
    """The server's only ZOOSERVE_ settings (serve_fixture.clean_env drops the rest)."""
    env = {"ZOOSERVE_LOG_LEVEL": "warning", "ZOOSERVE_GENERATION_MAX_ACTIVE": str(max_active)}
    if threads:
        env |= {"ZOOSERVE_INTRA_OP_THREADS": str(threads), "ZOOSERVE_INTER_OP_THREADS": str(threads)}
    return env


def scraped(base_url: str, metric: str, labels: str) -> list[float]:
    """The values of `metric`'s series whose labels include `labels` (as written in /metrics: `model="m"`)."""
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()
    return [float(line.rsplit(" ", 1)[1]) for line in lines
            if line.startswith(metric + "{") and labels in line]


def cache_line(base_url: str, models: list[str], prompts: str) -> str:
    """What the prompts were and how many of the server's prefills the prompt cache answered."""
    counts = []
    for m in models:
        hit, miss = (sum(scraped(base_url, "zooserve_generation_prompt_cache_total", f'model="{m}",result="{r}"'))
                     for r in ("hit", "miss"))
        counts.append(f"{m} {hit:.0f} of {hit + miss:.0f}")
    what = f'the same for every stream ("{PROMPT}")' if prompts == "same" else "a different one for every request"
    return f"Prompts: {what}; prompts the prompt cache answered without a prefill: {', '.join(counts)}\n"


def server_options(env: dict[str, str], base_url: str, model: str):
    """The onnxruntime session options the server built for `model` from `env`, for the raw stepping: its
    settings, with the intra-op thread count its thread policy chose (zooserve_model_intra_op_threads)."""
    from service.runtime.engine.session import serving_session_options
    from service.settings import Settings

    threads = int(scraped(base_url, "zooserve_model_intra_op_threads", f'model="{model}"')[0])
    settings = Settings(_env_file=None, **{k.removeprefix("ZOOSERVE_").lower(): v for k, v in env.items()})
    return serving_session_options(settings, intra_op=threads)


def raw_rows_per_s(folder: Path, batch: int, steps: int, opts) -> tuple[float, float]:
    """(rows per second, seconds per step) stepping the graph at `batch` rows, states fed back."""
    import onnxruntime as ort

    from zooserve.card import load_card
    from service.runtime.generation.stepping import zero_state

    sess = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    card = load_card(folder)
    state, outs = zero_state(card, batch), [o.name for o in card.outputs]
    tokens = np.random.default_rng(0).integers(0, card.preprocess.vocab_size, (batch, 1))
    for _ in range(20):  # warm-up
        sess.run(outs, {"tokens": tokens, **state})
    t0 = time.perf_counter()
    for _ in range(steps):
        logits, *new = sess.run(outs, {"tokens": tokens, **state})
        state = dict(zip(state, new))
        tokens = logits[:, -1].argmax(-1)[:, None]
    dt = (time.perf_counter() - t0) / steps
    return batch / dt, dt


PROMPT = "The engineer and the sailor"
_distinct = itertools.count()


def prompt(kind: str) -> str:
    """The request's prompt: the same for every stream ("same"), or one no request of the run has sent
    before ("distinct", 27 characters like the other: each is prefilled, none comes from the prompt cache)."""
    return PROMPT if kind == "same" else f"The engineer, prompt {next(_distinct):06d}"


async def _one_stream(host: str, port: int, model: str, tokens: int, seed: int,
                      prompts: str = "same") -> tuple[float, float, int]:
    """One generate_stream request on its own connection, read to the end with asyncio streams (about a
    tenth of httpx's CPU per chunk, which matters when client and server share 2 cores).
    -> (seconds to the first chunk of body, seconds in all, tokens)."""
    body = json.dumps({"text_input": prompt(prompts),
                       "parameters": {"max_tokens": tokens, "seed": seed}}).encode()
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"POST /v2/models/{model}/generate_stream HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                 f"application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace"))
    first, tail = 0.0, b""
    while chunk := await reader.read(65536):
        first = first or time.perf_counter() - t0
        tail = (tail + chunk)[-4096:]
    writer.close()
    # Every event is one chunk of the chunked encoding, so the last event is whole inside the tail.
    event = tail.rsplit(b"data: ", 1)[-1].split(b"\n\n", 1)[0]
    return first, time.perf_counter() - t0, json.loads(event)["details"]["generated_tokens"]


async def stream_once(base: str, model: str, streams: int, tokens: int, prompts: str = "same",
                      before_burst: Callable[[], None] | None = None) -> tuple[float, int, float]:
    """`streams` concurrent requests of `tokens` tokens -> (wall seconds, tokens in all, median seconds per
    token of one stream after its first: its time per output token). `before_burst` runs after the warm-up
    stream, right before the clock starts (gen_cpu reads the CPU times there)."""
    host, port = base.removeprefix("http://").split(":")
    await _one_stream(host, int(port), model, tokens, 0, prompts)  # warm the server
    if before_burst is not None:
        before_burst()
    t0 = time.perf_counter()
    done = await asyncio.gather(*(_one_stream(host, int(port), model, tokens, s, prompts)
                                  for s in range(1, streams + 1)))
    wall = time.perf_counter() - t0
    tpot = statistics.median((total - first) / max(n - 1, 1) for first, total, n in done)
    return wall, sum(n for _, _, n in done), tpot


def summary(pairs: list[tuple[tuple[float, float], tuple[float, int, float]]]) -> dict:
    """One model and stream count over the rounds: each round's ((raw rows/s, raw s per step), (wall s,
    tokens, s per token)) -> medians, and the medians of each round's own ratios."""
    raw_tps = [raw[0] for raw, _ in pairs]
    tps = [n / wall for _, (wall, n, _) in pairs]
    return dict(raw_tps=statistics.median(raw_tps), raw_step=statistics.median(raw[1] for raw, _ in pairs),
                tps=statistics.median(tps), per_token=statistics.median(t for _, (_, _, t) in pairs),
                raw_tps_runs=raw_tps, tps_runs=tps,
                tps_ratio=statistics.median(a / b for a, b in zip(tps, raw_tps)),
                latency_ratio=statistics.median(t / raw[1] for raw, (_, _, t) in pairs))


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def int8_line(results: dict, float_model: str, int8_model: str, top: int) -> str:
    """The INT8 target at `top` streams: it applies only where the raw INT8 step is INT8_RAW_GATE x faster."""
    f, q = results[(float_model, top)], results[(int8_model, top)]
    raw = statistics.median(a / b for a, b in zip(q["raw_tps_runs"], f["raw_tps_runs"]))
    served = statistics.median(a / b for a, b in zip(q["tps_runs"], f["tps_runs"]))
    target = TARGETS["int8_vs_float32"]
    applies = raw >= INT8_RAW_GATE
    return (f"\n{int8_model} vs {float_model} at {top} streams: {served:.3f}x the tokens/s through zooserve, raw "
            f"step {raw:.2f}x (target >= {target} where the raw step is >= {INT8_RAW_GATE}x): "
            f"{verdict(served >= target) if applies else 'n.a.'}")


def report(args: argparse.Namespace, models: list[str], levels: list[int], rows: list[str], results: dict,
           loads: tuple[float, float], threads: str, cache: str = "") -> str:
    """The Markdown report: the run's settings and machine, the table, and the targets' ratios."""
    lines = [f"gen_bench: {args.tokens} tokens per stream, medians of {args.repeats} rounds (each ratio: the median of "
             f"the rounds' own), onnxruntime intra-op threads "
             f"{threads} (per model, as the server chose them: zooserve_model_intra_op_threads), {os.cpu_count()} CPUs: {cpu.describe()}, load average "
             f"{loads[0]:.2f} at start and {loads[1]:.2f} at the end\n", cache,
             "| model | streams | raw tokens/s (B=streams) | zooserve tokens/s | ratio | raw step us | "
             "zooserve us/token/stream | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|", *rows]
    top = max(levels)
    for m in models:
        if (m, 1) in results and (m, top) in results:
            streams, latency = results[(m, top)]["tps_ratio"], results[(m, 1)]["latency_ratio"]
            lines.append(f"\n{m}: {top} streams reach {streams:.3f}x raw B={top} stepping (target >= "
                         f"{TARGETS['streams32_vs_raw32']}: {verdict(streams >= TARGETS['streams32_vs_raw32'])}); "
                         f"a single stream's per-token latency is {latency:.3f}x a raw B=1 step (target <= "
                         f"{TARGETS['latency1_vs_raw1']}: {verdict(latency <= TARGETS['latency1_vs_raw1'])})")
    for m in models:
        if f"{m}-int8" in models and (m, top) in results and (f"{m}-int8", top) in results:
            lines.append(int8_line(results, m, f"{m}-int8", top))
    if len(models) > 1 and all((mm, c) in results for mm in models[:2] for c in levels):
        a, b = models[:2]
        speedups = ", ".join(f"{c} streams {statistics.median(x / y for x, y in zip(results[(b, c)]['tps_runs'], results[(a, c)]['tps_runs'])):.2f}x"
                             for c in levels)
        lines.append(f"\n{b} vs {a} through zooserve (tokens/s): {speedups}")
    return "\n".join(lines)


def add_stream_arguments(p: argparse.ArgumentParser, streams: str) -> None:
    """The arguments of both generation benchmarks (this one and gen_step_cost.py)."""
    p.add_argument("--models", type=Path, default=ROOT / "models", help="model repository")
    p.add_argument("--model", action="append", help="language models to run (default island-lstm, island-lstm-int8)")
    p.add_argument("--streams", default=streams, help="concurrent streams, one row each")
    p.add_argument("--tokens", type=int, default=256, help="tokens per stream")
    p.add_argument("--repeats", type=int, default=3, help="runs per figure (the median is shown)")
    p.add_argument("--dry-run", action="store_true", help="tiny counts: 1 and 2 streams, 16 tokens, 1 repeat")
    record.add_arguments(p)


def add_burst_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of the benchmarks that time bursts of one model (gen_ab.py, gen_cpu.py)."""
    p.add_argument("--models", type=Path, default=ROOT / "models", help="model repository")
    p.add_argument("--model", default="island-lstm-int8", help="the language model")
    p.add_argument("--streams", type=int, default=32, help="concurrent streams per burst")
    p.add_argument("--tokens", type=int, default=256, help="tokens per stream")
    p.add_argument("--prompts", choices=("same", "distinct"), default="same", help="as gen_bench's --prompts")
    record.add_arguments(p)


def stream_plan(args: argparse.Namespace) -> tuple[list[str], list[int]]:
    """(models, stream counts) from add_stream_arguments' arguments; --dry-run's tiny counts set on `args`."""
    if args.dry_run:
        args.streams, args.tokens, args.repeats = "1,2", 16, 1
    return args.model or ["island-lstm", "island-lstm-int8"], [int(x) for x in args.streams.split(",")]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stream_arguments(p, "1,8,32")
    p.add_argument("--threads", type=int, help="onnxruntime intra/inter-op threads, raw and server alike "
                                               "(default: the server's own policy, serving_session_options)")
    p.add_argument("--prompts", choices=("same", "distinct"), default="same",
                   help="one prompt for every stream (the default: after the first, the prompt cache answers its "
                        "prefill), or a new one for each request (every prompt is prefilled)")
    args = p.parse_args(argv)
    models, levels = stream_plan(args)
    raw_steps = max(50, args.tokens)

    rows, results, load0 = [], {}, os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        for m in models:
            (repo / m).symlink_to((args.models / m).resolve())
        env = server_env(args.threads, max(levels))
        threads = {}
        with running_server(repo, workdir=Path(tmp) / "run", env=env) as server:
            opts = {}
            for m in models:
                opts[m] = server_options(env, server.base_url, m)
                threads[m] = opts[m].intra_op_num_threads
            runs: dict[tuple[str, int], list[tuple]] = {(m, c): [] for m in models for c in levels}
            for _ in range(args.repeats):  # rounds: see the module docstring
                for c in levels:
                    for m in models:
                        raw = raw_rows_per_s(args.models / m / "1", c, raw_steps, opts[m])
                        runs[(m, c)].append((raw, asyncio.run(stream_once(server.base_url, m, c, args.tokens,
                                                                          args.prompts))))
            cache = cache_line(server.base_url, models, args.prompts)
            for (m, c), pairs in runs.items():
                r = results[(m, c)] = summary(pairs)
                rows.append(f"| {m} | {c} | {r['raw_tps']:,.0f} | {r['tps']:,.0f} | {r['tps_ratio']:.2f} | "
                            f"{r['raw_step'] * 1e6:,.0f} | {r['per_token'] * 1e6:,.0f} | {r['latency_ratio']:.2f} |")
                print(rows[-1], file=sys.stderr, flush=True)

    text = report(args, models, levels, rows, results, (load0, os.getloadavg()[0]),
                  ", ".join(f"{m} {n}" for m, n in threads.items()), cache)
    print(f"\n{text}")
    record.save_run(args, text, script=__file__, argv=argv, models=models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
