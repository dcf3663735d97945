"""The generation worker's Python cost per token, in CPU time: what each token adds to the graph calls.

    python benchmarks/gen_step_cost.py               # island-lstm and island-lstm-int8, 1 and 32 streams
    python benchmarks/gen_step_cost.py --dry-run     # tiny counts: a smoke test in seconds

In this process: the served language model as the repository builds it (its session with the server's
options, serving_session_options, its steps graph if the card has one, its stepper and scheduler), and S streams of --tokens tokens each
(temperature 1, a seed each) whose consumers read their events as the streaming endpoints do (no HTTP). The worker's and
the event loop's Python are measured in CPU time (`time.thread_time()`), which holds on a machine that other
work shares, where wall-clock ratios do not (caches shared with other work still move it).

tokens per call  tokens each row gets from one graph call: 1 a step, up to CHUNK_MAX from the steps graph
graph calls      wall time of the graph calls on the worker thread, per token (all calls / tokens per row)
worker python    the worker thread's CPU between graph calls, per token: sampling (one-token steps),
                 bookkeeping, the hand-off to the event loop, right after a graph call, with the caches it left
event loop       the event loop's CPU per token (its thread over the whole run / tokens per row): events, their
                 text, the consumers' wake-ups
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402  (after the path fix above)
from benchmarks.gen_bench import add_stream_arguments, stream_plan  # noqa: E402
from zooserve import cpu  # noqa: E402


class TimedRun:
    """Graph calls timed on the calling (worker) thread: each call's wall time, and the thread's CPU between
    the end of one call and the start of the next, whichever graph either was (onnxruntime may run part of a
    call on its own pool threads, so the call itself is timed on the wall clock)."""

    def __init__(self):
        self.graph, self.between, self.last_end = [], [], None

    def wrap(self, run):
        def timed(feeds):
            start = time.thread_time()
            if self.last_end is not None:
                self.between.append(start - self.last_end)
            wall = time.perf_counter()
            out = run(feeds)
            self.graph.append(time.perf_counter() - wall)
            self.last_end = time.thread_time()
            return out

        return timed


async def streams(model, settings, count: int, tokens: int) -> int:
    """`count` streams of `tokens` tokens each, read to the end -> events read."""
    from service.runtime.generation.request import parse

    async def one(seed: int) -> int:
        req = parse("The engineer and the sailor", {"max_tokens": tokens, "seed": seed}, settings, prompt_field="text")
        return sum([len(batch) async for batch in model.generate(req).batches()])

    return sum(await asyncio.gather(*(one(s) for s in range(count))))


def measure(folder: Path, count: int, tokens: int) -> dict:
    """One run: the served language model as the repository builds it, its graph calls timed."""
    from service.runtime.engine.session import OnnxModel, serving_session_options
    from service.runtime.repository.files import graph_card
    from service.runtime.tasks.registry import served_class
    from service.settings import Settings
    from zooserve.card import load_card

    card, settings = load_card(folder), Settings(_env_file=None)

    def opened(c):
        return OnnxModel(folder / c.artifact.file, c, providers=["CPUExecutionProvider"],
                         options=serving_session_options(settings, intra_op=threads()))

    session = opened(card)
    graphs = {g.role: opened(graph_card(card, g.role)) for g in card.graphs}  # the steps graph, if any
    files = {card.preprocess.vocab_file: (folder / card.preprocess.vocab_file).read_bytes()}
    model = served_class(card)(card, session, files=files, settings=settings, graphs=graphs)
    run = TimedRun()  # one timer for both kinds of call: `between` spans from either to the next
    model.stepper.run = run.wrap(session.run)
    if model.stepper.steps_run is not None:
        model.stepper.steps_run = run.wrap(model.stepper.steps_run)

    async def main() -> tuple[int, int, float]:
        model.start()
        await streams(model, settings, 1, 8)  # warm-up
        run.graph.clear(), run.between.clear()
        steps0, cpu0 = model.scheduler.steps, time.thread_time()
        events = await streams(model, settings, count, tokens)
        loop_cpu, steps = time.thread_time() - cpu0, model.scheduler.steps - steps0
        await model.drain_and_stop()
        return events, steps, loop_cpu

    events, steps, loop_cpu = asyncio.run(main())
    assert events == count * tokens, (events, count * tokens)
    return {"graph": sum(run.graph) / steps, "python": sum(run.between) / steps, "loop": loop_cpu / steps,
            "calls": len(run.graph), "steps": steps}


def threads() -> int:
    """The intra-op threads the server's thread policy gives a stepping graph: one fewer than its worker's
    share of the cores, at least 1 (the repository opens such graphs so at once, leaving the event loop a core)."""
    from service.runtime.engine.session import core_share
    from service.settings import Settings

    return max(1, core_share(Settings(_env_file=None)) - 1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stream_arguments(p, "1,32")
    args = p.parse_args(argv)
    models, levels = stream_plan(args)

    lines = [f"gen_step_cost: {args.tokens} tokens per stream, median of {args.repeats} runs, us per token (per row "
             f"of a step), onnxruntime intra-op threads {threads()}, {cpu.describe()}\n",
             "| model | streams | tokens per call | graph calls (wall) | worker python (CPU) | event loop (CPU) |",
             "|---|---:|---:|---:|---:|---:|"]
    for m in models:
        for c in levels:
            runs = [measure(args.models / m / "1", c, args.tokens) for _ in range(args.repeats)]
            graph, python, loop, calls, steps = (statistics.median(r[k] for r in runs)
                                                 for k in ("graph", "python", "loop", "calls", "steps"))
            lines.append(f"| {m} | {c} | {steps / calls:.1f} | {graph * 1e6:,.1f} | {python * 1e6:,.1f} | "
                         f"{loop * 1e6:,.1f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    text = "\n".join(lines)
    print(f"\n{text}")
    record.save_run(args, text, script=__file__, argv=argv, models=models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
