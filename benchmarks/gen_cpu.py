"""Where a burst of streaming generation spends CPU: the server's event loop, its other threads (the
generation worker, and onnxruntime's own if it has any), and the client.

    python benchmarks/gen_cpu.py                  # island-lstm-int8, 100 bursts of 32 streams x 256 tokens
    python benchmarks/gen_cpu.py --tokens 1       # the requests alone: one token each

The server is started as gen_bench starts it (`python -m service.cli` on 127.0.0.1, the model alone in its
repository), and the client is gen_bench's (asyncio streams in this process). Each burst follows a warm-up
stream. Around each burst, two things are read: every server thread's user and system time, from
/proc/<pid>/task/<tid>/stat (the event loop is the main thread), and this process's time, from os.times().
Linux only. The kernel counts in ticks of 10 ms, so each figure is a sum over all bursts divided by their
number. gen_bench tells how fast a burst is; this tells which thread is busy through it. On a 2-core machine,
the thread busy for nearly the whole burst is the critical path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402  (after the path fix above)
from benchmarks.gen_bench import add_burst_arguments, server_env, stream_once  # noqa: E402
from benchmarks.peers.proc_cpu import TICKS, thread_cpu_seconds  # noqa: E402
from zooserve import cpu  # noqa: E402
from tests.service.serve_fixture import running_server  # noqa: E402

PARTS = ("event loop (main thread)", "other threads", "client (this process)")


def burst_cpu(pid: int, base_url: str, args: argparse.Namespace) -> tuple[float, int, dict[str, list[float]]]:
    """One burst -> (wall seconds, tokens, {part: [user, system] seconds}). The readings are taken after
    stream_once's warm-up stream, right before its clock starts, and right after its burst ends."""
    before = {}

    def mark() -> None:
        before["server"], before["client"] = thread_cpu_seconds(pid), os.times()

    wall, tokens, _ = asyncio.run(stream_once(base_url, args.model, args.streams, args.tokens, args.prompts,
                                              before_burst=mark))
    client, server = os.times(), thread_cpu_seconds(pid)
    spent = {part: [0.0, 0.0] for part in PARTS}
    for tid, (user, system) in server.items():
        u0, s0 = before["server"].get(tid, (0.0, 0.0))  # a thread born during the burst started at 0
        part = spent[PARTS[0] if tid == pid else PARTS[1]]
        part[0] += user - u0
        part[1] += system - s0
    spent[PARTS[2]] = [client.user - before["client"].user, client.system - before["client"].system]
    return wall, tokens, spent


def report(args: argparse.Namespace, walls: list[float], tokens: int, spent: dict[str, list[float]]) -> str:
    n = len(walls)
    lines = [f"gen_cpu: {args.model}, {n} bursts of {args.streams} streams x {args.tokens} tokens, prompts "
             f"{args.prompts}; median burst {1e3 * statistics.median(walls):.1f} ms; {os.cpu_count()} CPUs: "
             f"{cpu.describe()}\n",
             "| part | CPU ms per burst | user | system | share of the median burst | us per token |",
             "|---|---:|---:|---:|---:|---:|"]
    for part in PARTS:
        user, system = (x / n for x in spent[part])
        lines.append(f"| {part} | {1e3 * (user + system):.2f} | {1e3 * user:.2f} | {1e3 * system:.2f} | "
                     f"{(user + system) / statistics.median(walls):.2f} | {1e6 * (user + system) * n / tokens:.1f} |")
    lines.append(f"\nTokens in all: {tokens}. Kernel ticks of {1e3 / TICKS:.0f} ms: each figure is a sum over "
                 f"the {n} bursts divided by {n}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_burst_arguments(p)
    p.add_argument("--bursts", type=int, default=100, help="bursts measured")
    p.add_argument("--dry-run", action="store_true", help="tiny counts: 2 streams, 8 tokens, 2 bursts")
    args = p.parse_args(argv)
    if args.dry_run:
        args.streams, args.tokens, args.bursts = 2, 8, 2
    if not Path("/proc/self/task").is_dir():
        p.error("per-thread CPU times come from /proc/<pid>/task: Linux only")
    walls, tokens = [], 0
    spent = {part: [0.0, 0.0] for part in PARTS}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / args.model).symlink_to((args.models / args.model).resolve())
        with running_server(repo, workdir=Path(tmp) / "server", env=server_env(None, args.streams)) as server:
            for _ in range(args.bursts):
                wall, n, burst = burst_cpu(server.proc.pid, server.base_url, args)
                walls.append(wall)
                tokens += n
                for part, (user, system) in burst.items():
                    spent[part][0] += user
                    spent[part][1] += system
    text = report(args, walls, tokens, spent)
    print(text)
    record.save_run(args, text, script=__file__, argv=argv, models=[args.model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
