"""Entry point of the peers benchmark (`python benchmarks/peers`, or `python -m benchmarks.peers`).

For each target in turn (bare, MLServer, LitServe, zooserve; one server at a time), each model and each
connection level: a checked request (the predicted class against onnxruntime in this process), warm-up,
then serve_bench.py's load generator with the server's process-tree CPU sampled around the window."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import record
from benchmarks import serve_bench as sb
from benchmarks.peers import proc_cpu, report, targets, venvs

SCRIPT = str(Path(__file__).resolve().parent)  # the saved command line: `python benchmarks/peers ...`


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, sb.Plan]:
    p = argparse.ArgumentParser(prog="benchmarks/peers", description=sys.modules["benchmarks.peers"].__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=sb.ROOT / "models", help="model repository (default models/)")
    p.add_argument("--model", action="append", help="model to measure (repeatable; default fashion-lenet and fashion-resnet)")
    p.add_argument("--peers", default="mlserver,litserve",
                   help="comma-separated peers among mlserver, litserve, or none (default both)")
    p.add_argument("--peer-batching", choices=["card", "off"], default="card",
                   help="the peers' batching: zooserve's card values (default), or off (one request per inference)")
    p.add_argument("--venvs", type=Path, default=venvs.DEFAULT_DIR, help=f"where the peers' venvs live (default {venvs.DEFAULT_DIR})")
    sb.add_load_arguments(p)
    p.add_argument("--python", default=sys.executable, help="interpreter for bare and zooserve")
    record.add_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="tiny counts: checks that everything runs, in seconds")
    args = p.parse_args(argv)
    peers = [] if args.peers == "none" else args.peers.split(",")
    unknown = set(peers) - set(venvs.PINS)
    if unknown:
        p.error(f"unknown peers {sorted(unknown)}: choose among {sorted(venvs.PINS)} or none")
    args.peer_list = peers
    return args, sb.load_plan(args)


def image() -> np.ndarray:
    """serve_bench.py's request image: (1, 1, 28, 28) float32, normalised as Fashion-MNIST."""
    rng = np.random.default_rng(0)
    return ((rng.integers(0, 256, size=(1, 1, 28, 28)).astype(np.float32) / 255 - 0.286) / 0.353).astype(np.float32)


def answer_ok(target: str, runner: asyncio.Runner, port: int, path: str, body: sb.Body, expected: int) -> bool:
    """One request: the predicted class is onnxruntime's (bare, which runs no model: one row parsed)."""
    import orjson

    async def post() -> sb.Response:
        async with sb.Client("raw", port, 1) as client:
            return await asyncio.wait_for(client.post(0, path, body), 60)
    try:
        r = runner.run(post())
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
        sb.log(f"{target} {path}: checked request failed: {exc!r}")
        return False
    if r.status != 200:
        sb.log(f"{target} {path}: checked request -> {r.status}: {r.content[:300]!r}")
        return False
    if target == "bare":
        return orjson.loads(r.content).get("rows") == 1
    got = int(sb.decode_logits(r.content, r.headers).argmax())
    if got != expected:
        sb.log(f"{target} {path}: predicted class {got}, onnxruntime says {expected}")
    return got == expected


def measure(target: str, proc: sb.Process, setup: targets.Setup, plan: sb.Plan, runner: asyncio.Runner,
            bodies: dict[str, sb.Body], expected: dict[str, int]) -> list[report.PeerRow]:
    rows = []
    for m in setup.models:
        path = f"/v2/models/{m.name}/infer"
        for c in plan.concurrency:
            ok = answer_ok(target, runner, proc.port, path, bodies[m.name], expected[m.name])
            samples = []
            done, errors, wall, lat = runner.run(sb.load(
                "raw", proc.port, path, bodies[m.name], c, plan.requests, plan.max_seconds, plan.warmup,
                before=lambda: samples.append(proc_cpu.tree_cpu_seconds(proc.proc.pid)),
                after=lambda: samples.append(proc_cpu.tree_cpu_seconds(proc.proc.pid))))
            (cpu0, _), (cpu1, n) = samples
            rows.append(report.PeerRow(target, m.name, "json", c, done, errors + (not ok), wall, lat,
                                       server_cpu_s=cpu1 - cpu0, processes=n))
            r = rows[-1]
            sb.log(f"{target} {m.name} c={c}: {r.rps:.0f} req/s, p99 {r.pct(99):.1f} ms, {r.errors} errors, "
                   f"server {r.cores:.2f} cores")
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, plan = parse_args(argv)
    names = args.model or sb.DEFAULT_MODELS
    info = sb.machine_info()
    peer_python = {p: venvs.ensure(p, args.venvs, log=sb.log) for p in args.peer_list}  # before any timing
    work = Path(tempfile.mkdtemp(prefix="peers-bench-"))
    sb.log(f"server logs and settings go to {work}")
    models = targets.copy_repository(args.models.resolve(), names, work / "repository")
    setup = targets.Setup(args.python, peer_python, models, work / "repository", targets.ort_options(), work,
                          args.ready_timeout, peer_batching=args.peer_batching == "card")
    x = image()
    bodies, expected = {}, {}
    for m in models:
        session = sb.server_session(m.onnx)
        bodies[m.name] = sb.make_bodies(session.get_inputs()[0].name, x)["json"]
        expected[m.name] = int(session.run(None, {session.get_inputs()[0].name: x})[0].argmax())

    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    rows: list[report.PeerRow] = []
    configs: dict[str, str] = {}
    t0 = time.perf_counter()
    try:
        for target in [t for t in report.ORDER if t in ("bare", "zooserve", *args.peer_list)]:
            proc, configs[target] = targets.STARTERS[target](setup)
            try:
                rows += measure(target, proc, setup, plan, runner, bodies, expected)
            finally:
                proc.stop()
    finally:
        runner.close()

    info["loadavg_end"] = os.getloadavg()
    extra = {"mode": "dry-run" if args.dry_run else "full", "plan": vars(plan), "ort": setup.ort,
             "configs": configs, "wall_s": time.perf_counter() - t0,
             "peer_versions": {p: venvs.versions(py, p) for p, py in peer_python.items()}}
    text = report.render(info, rows, extra)
    print(text)
    record.save_run(args, text, script=SCRIPT, argv=argv, models=names)
    missed = any(not ok for *_, ok in report.checks(rows))
    return 1 if missed or any(r.errors for r in rows) else 0
