"""Chaos run: hostile and extreme traffic against a live `zooserve serve` on 127.0.0.1, in one table.

    python benchmarks/chaos.py                                   # all six scenarios, models/ (~2.5 minutes on 2 cores)
    python benchmarks/chaos.py --dry-run --scenario fuzz         # small counts: a smoke test in seconds

Each scenario starts its own server (`python -m service.cli`, the repository --models, default settings
but for what the scenario needs) and reads its RSS from /proc/<pid>/status: before, the peak during
(VmHWM, reset through clear_refs; VmRSS sampled every 10 ms as well) and after (once things settled).

  fuzz      a few hundred hand-made and random malformed requests over every endpoint: the hand-made ones
            must all answer 4xx, the random ones (an edit may leave a valid request) never 5xx or nothing
  poison    concurrent good requests with one malformed-but-parseable request in every ten: every good one
            200, every bad one 400
  overload  twice ZOOSERVE_MAX_QUEUE connections on one model, each resending at once (no back-off): only
            200 and 503 with Retry-After; recovery = from the end of the burst until a new request gets 200
  large     per endpoint and model kind the largest request the defaults accept, timed against a small
            request to the same model sent over and over meanwhile, and the requests just over each limit
  reload    repository control on: the model file of a copy truncated and loaded while good requests run
            (a 5xx with a reason, every good request 200); unload without the admin key; recovery = the load
            of the restored file
  sigterm   SIGTERM under load: readiness 503 at once, requests served through the drain, a generation
            running past it finishes, the process exits within drain + grace

Targets are the `checks` column; the exit code is 1 when any check missed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402  (after the path is set)
from benchmarks.chaos_requests import (DEFAULTS, IMAGE, IMAGE_BIG, MAX_CHARS, NGRAM, RNN, TEXT, Call,  # noqa: E402
                                       corpus_text, fuzz_calls, infer_doc, infer_path, large_cases, latest_card,
                                       poison_calls, post)
from benchmarks.chaos_tools import (RssWatch, drive, once, probe_while, seconds_until, shown,  # noqa: E402
                                    tally, until)
from benchmarks.serve_bench import log  # noqa: E402
from tests.service.serve_fixture import running_server  # noqa: E402

MODELS = (IMAGE, IMAGE_BIG, TEXT, RNN, NGRAM)
READY = Call("GET", "/v2/health/ready", kind="ready")
PEAK_MB, AFTER_SHARE, WAIT_S = 256.0, 0.10, 2.0  # large requests: peak RSS increase, RSS after vs before, probe wait


@dataclass(frozen=True)
class Plan:
    dry: bool
    fuzz_random: int  # random malformed requests, besides the hand-made ones
    workers: int  # concurrent connections for fuzz, poison, reload and sigterm
    poison_requests: int
    overload_s: float
    max_queue: int  # the server's ZOOSERVE_MAX_QUEUE for overload, which opens twice as many connections
    drain_s: float
    grace_s: float
    settle_s: float  # pause before RSS "after" is read
    long_chars: int  # sigterm: the text of a /score that is still running when the drain ends (~70 us a char)


FULL = Plan(False, 250, 32, 3000, 10.0, DEFAULTS["max_queue"].default, DEFAULTS["shutdown_drain_s"].default,
            DEFAULTS["shutdown_grace_s"].default, 1.0, MAX_CHARS)
DRY = Plan(True, 30, 8, 200, 2.0, 16, 1.0, 5.0, 0.2, 20_000)


# -- results -----------------------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    value: object
    target: str
    ok: bool

    def __str__(self) -> str:
        return f"{self.name}: {self.value} ({self.target}) {'ok' if self.ok else 'MISS'}"


def at_most(name: str, value: float, limit: float, fmt: str = "g") -> Check:
    return Check(name, format(value, fmt), f"<= {format(limit, fmt)}", value <= limit)


def none_of(name: str, bad: list) -> Check:
    return Check(name, len(bad), "= 0", not bad)


@dataclass
class Row:
    scenario: str
    case: str
    codes: dict[str, Counter] = field(default_factory=dict)  # label ("" for one group) -> status -> count
    rss: RssWatch | None = None
    wait_s: float | None = None  # the longest a small request to the same model took meanwhile
    recovery_s: float | None = None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        requests = sum(sum(c.values()) for c in self.codes.values())
        codes = "; ".join((f"{label} " if label else "") + ", ".join(f"{s or 'none'}: {n}" for s, n in sorted(c.items()))
                          for label, c in self.codes.items())
        return [self.scenario, self.case, str(requests), codes, self.rss.cell() if self.rss else "-", _s(self.wait_s),
                _s(self.recovery_s), "; ".join(map(str, self.checks))]


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


# -- scenarios ---------------------------------------------------------------------------------------

@dataclass
class Context:
    port: int
    proc: subprocess.Popen
    cards: dict[str, dict]
    plan: Plan
    repo: Path
    env: dict[str, str]

    def probe(self, model: str) -> Call:
        return post(infer_path(model), infer_doc(self.cards[model]), "probe")

    async def serving(self) -> Check:
        """Whether the server is ready and answers a small request, within 10 s."""
        s = await seconds_until(self.port, [READY, self.probe(IMAGE)], limit=10.0)
        return Check("ready and serving after", "no" if s is None else "yes", "yes", s is not None)


async def fuzz(ctx: Context) -> list[Row]:
    hand, randoms = fuzz_calls(ctx.cards, ctx.plan.fuzz_random)
    calls = hand + randoms
    random.Random(1).shuffle(calls)  # every kind meets every other in the server at once
    with RssWatch(ctx.proc.pid) as rss:
        outcomes = await drive(ctx.port, calls, ctx.plan.workers)
    await rss.settle(ctx.plan.settle_s)
    serving = await ctx.serving()
    by_id = {id(c) for c in hand}
    rows = []
    for label, group in (("hand-made", [o for o in outcomes if id(o.call) in by_id]),
                         ("random", [o for o in outcomes if id(o.call) not in by_id])):
        failed = [o for o in group if o.status >= 500 or o.status == 0]
        # Each hand-made request is malformed: a 2xx took what it should have refused. A random edit may
        # leave a valid request (a deleted optional field), so only their 5xx count.
        accepted = [o for o in group if 200 <= o.status < 300] if label == "hand-made" else []
        checks = [none_of("5xx or no answer", failed), *([none_of("2xx", accepted)] if label == "hand-made" else []),
                  serving]
        rows.append(Row("fuzz", f"{label} ({len(group)})", {"": tally(group)}, rss, checks=checks,
                        notes=[f"fuzz {label}: {shown(o)}" for o in failed + accepted]))
    return rows


async def poison(ctx: Context) -> list[Row]:
    with RssWatch(ctx.proc.pid) as rss:
        outcomes = await drive(ctx.port, poison_calls(ctx.cards, ctx.plan.poison_requests), ctx.plan.workers)
    await rss.settle(ctx.plan.settle_s)
    good = [o for o in outcomes if o.call.kind == "good"]
    bad = [o for o in outcomes if o.call.kind != "good"]
    failed, slipped = [o for o in good if o.status != 200], [o for o in bad if o.status != 400]
    checks = [none_of("good not 200", failed), none_of("bad not 400", slipped), await ctx.serving()]
    return [Row("poison", f"1 bad in 10, {ctx.plan.workers} connections", {"good": tally(good), "bad": tally(bad)},
                rss, checks=checks, notes=[f"poison: {shown(o)}" for o in failed + slipped])]


async def overload(ctx: Context) -> list[Row]:
    connections = 2 * ctx.plan.max_queue
    stop = asyncio.Event()
    with RssWatch(ctx.proc.pid) as rss:
        load = asyncio.create_task(drive(ctx.port, until(stop, itertools.repeat(ctx.probe(IMAGE_BIG))), connections))
        await asyncio.sleep(ctx.plan.overload_s)
        stop.set()  # the load stops here: a new request waits until the queue has room again
        recovery = await seconds_until(ctx.port, [ctx.probe(IMAGE_BIG)])
        outcomes = await load
    await rss.settle(ctx.plan.settle_s)
    other = [o for o in outcomes if o.status not in (200, 503)]
    full = [o for o in outcomes if o.status == 503]
    checks = [none_of("not 200 or 503", other), none_of("503 without Retry-After",
                                                       [o for o in full if "retry-after" not in o.headers]),
              Check("queue overflowed (503s)", len(full), "> 0", bool(full)), await ctx.serving()]
    return [Row("overload", f"{connections} connections vs max_queue {ctx.plan.max_queue}, {IMAGE_BIG}",
                {"": tally(outcomes)}, rss, recovery_s=recovery, checks=checks,
                notes=[f"overload: {shown(o)}" for o in other[:5]])]


async def large(ctx: Context) -> list[Row]:
    rows = []
    for case in large_cases(ctx.cards, ctx.plan.dry):
        with RssWatch(ctx.proc.pid) as rss:
            big = asyncio.create_task(once(ctx.port, case.call))
            probes = await probe_while(ctx.port, case.probe, big)
            out = await big
        await rss.settle(ctx.plan.settle_s)
        wait = max(o.seconds for o in probes)
        if case.expect == 200:
            checks = [Check("status", out.status, "200", out.status == 200), at_most("peak +MB", rss.increase_mb, PEAK_MB, ".0f"),
                      Check("after vs before", f"{rss.after_share:+.1%}", f"within {AFTER_SHARE:.0%}",
                            abs(rss.after_share) <= AFTER_SHARE), at_most("small request waited s", wait, WAIT_S, ".2f")]
        else:
            checks = [Check("status", out.status, str(case.expect), out.status == case.expect),
                      Check("says why", "yes" if out.message else "no", "yes", bool(out.message))]
        checks.append(none_of("small requests not 200", [o for o in probes if o.status != 200]))
        rows.append(Row("large", case.call.kind, {"": tally([out]), "small": tally(probes)}, rss, wait, checks=checks,
                        notes=[f"large: {shown(out)}"] if out.status != 200 else []))
        log(f"large: {case.call.kind}: {out.status} in {out.seconds:.2f}s")
    return rows


def breakable_copy(models: Path, tmp: Path) -> Path:
    """A repository linking every model of `models` but IMAGE, which is copied: the reload breaks its copy,
    never models/."""
    repo = tmp / "models"
    repo.mkdir(parents=True)
    for d in sorted(p for p in models.iterdir() if p.is_dir()):
        if d.name == IMAGE:
            shutil.copytree(d, repo / d.name)
        else:
            (repo / d.name).symlink_to(d.resolve())
    return repo


async def reload(ctx: Context) -> list[Row]:
    control = f"/v2/repository/models/{IMAGE}"
    admin = (("X-Admin-Key", ctx.env["ZOOSERVE_ADMIN_KEY"]),)
    card = ctx.cards[IMAGE]
    onnx = ctx.repo / IMAGE / str(card["version"]) / card["artifact"]["file"]
    original, stop = onnx.read_bytes(), asyncio.Event()
    with RssWatch(ctx.proc.pid) as rss:
        load = asyncio.create_task(drive(ctx.port, until(stop, itertools.repeat(ctx.probe(IMAGE))), ctx.plan.workers))
        await asyncio.sleep(0.5)
        onnx.write_bytes(original[:len(original) // 2])
        broken = await once(ctx.port, Call("POST", f"{control}/load", headers=admin, kind="load truncated"))
        anonymous = await once(ctx.port, Call("POST", f"{control}/unload", kind="unload without key"))
        wrong = await once(ctx.port, Call("POST", f"{control}/unload", headers=(("X-Admin-Key", "wrong"),),
                                          kind="unload with a wrong key"))
        onnx.write_bytes(original)
        restored = await once(ctx.port, Call("POST", f"{control}/load", headers=admin, kind="load restored"))
        await asyncio.sleep(0.5)  # good requests meet the reloaded version too
        stop.set()
        good = await load
    await rss.settle(ctx.plan.settle_s)
    failed, named = [o for o in good if o.status != 200], card["artifact"]["file"] in broken.message
    checks = [Check("truncated load", broken.status, "5xx", broken.status >= 500),
              Check("its reason names the file", "yes" if named else "no", "yes", named),
              none_of("good not 200", failed),
              *(Check(o.call.kind, o.status, "401/403", o.status in (401, 403)) for o in (anonymous, wrong)),
              Check("restored load", restored.status, "200", restored.status == 200), await ctx.serving()]
    codes = {"good": tally(good), **{o.call.kind: tally([o]) for o in (broken, anonymous, wrong, restored)}}
    return [Row("reload", f"{IMAGE} model file truncated, {ctx.plan.workers} connections", codes, rss,
                recovery_s=restored.seconds, checks=checks,
                notes=[f"reload: {shown(broken)}", *(f"reload: {shown(o)}" for o in failed[:5])])]


async def sigterm(ctx: Context) -> list[Row]:
    drain, grace = ctx.plan.drain_s, ctx.plan.grace_s
    # In flight when the drain ends: a long /score (a 512-token generation takes only ~0.1 s on an LSTM).
    slow = post(f"/v1/models/{RNN}/score", {"text": corpus_text(ctx.plan.long_chars)}, "long request")
    stop = asyncio.Event()
    load = asyncio.create_task(drive(ctx.port, until(stop, itertools.repeat(ctx.probe(IMAGE_BIG))), ctx.plan.workers))
    await asyncio.sleep(0.5)
    with RssWatch(ctx.proc.pid) as rss:
        t0 = time.perf_counter()
        ctx.proc.send_signal(signal.SIGTERM)
        not_ready = await seconds_until(ctx.port, [READY], 503, limit=drain)
        await asyncio.sleep(max(0.0, t0 + drain - 0.3 - time.perf_counter()))
        long = asyncio.create_task(once(ctx.port, slow))
        await asyncio.sleep(0.1)
        stop.set()  # a load balancer has seen readiness by now and sends no more
        good, slow_out = await load, await long
        slow_s = time.perf_counter() - t0
        returncode = await asyncio.to_thread(ctx.proc.wait, drain + grace + 30)
        exit_s = time.perf_counter() - t0
    failed = [o for o in good if o.status != 200]
    checks = [Check("readiness 503 after s", _s(not_ready), "<= 0.5", not_ready is not None and not_ready <= 0.5),
              none_of("requests not 200", failed),
              Check("long request ran past the drain, ended at s", f"{slow_s:.2f}", f"> {drain:g}", slow_s > drain),
              Check("long request", slow_out.status, "200", slow_out.status == 200),
              at_most("exit after s", exit_s, drain + grace, ".2f"),
              Check("exit status", returncode, "0 or -15", returncode in (0, -signal.SIGTERM))]
    return [Row("sigterm", f"drain {drain:g}s, grace {grace:g}s, {ctx.plan.workers} connections",
                {"good": tally(good), "long": tally([slow_out])}, rss, checks=checks,
                notes=[f"sigterm: {shown(o)}" for o in [slow_out, *failed[:5]] if o.status != 200])]


@dataclass(frozen=True)
class Scenario:
    run: Callable
    env: Callable[[Plan], dict[str, str]] = lambda plan: {}
    repository: Callable[[Path, Path], Path] | None = None  # (--models, a scratch folder) -> repository to serve


SCENARIOS = {
    "fuzz": Scenario(fuzz),
    "poison": Scenario(poison),
    "overload": Scenario(overload, lambda plan: {"ZOOSERVE_MAX_QUEUE": str(plan.max_queue)}),
    "large": Scenario(large),
    "reload": Scenario(reload, lambda plan: {"ZOOSERVE_REPOSITORY_CONTROL": "true",
                                             "ZOOSERVE_ADMIN_KEY": secrets.token_hex(16)}, breakable_copy),
    "sigterm": Scenario(sigterm, lambda plan: {"ZOOSERVE_SHUTDOWN_DRAIN_S": str(plan.drain_s),
                                               "ZOOSERVE_SHUTDOWN_GRACE_S": str(plan.grace_s)}),
}


def run_scenario(name: str, models: Path, plan: Plan, tmp: Path) -> list[Row]:
    """Start a server for the scenario, run it, stop the server. A scenario that cannot finish (the
    server does not start or dies) is a row that says so."""
    spec = SCENARIOS[name]
    repo = spec.repository(models, tmp) if spec.repository else models
    # No drain on the way out (a stop would take 5 s each), but where the scenario is the shutdown.
    env = {"ZOOSERVE_SHUTDOWN_DRAIN_S": "0", **spec.env(plan)}
    try:
        with running_server(repo, workdir=tmp / "work", env=env, ready_timeout=120.0) as server:
            ctx = Context(server.port, server.proc, {m: latest_card(repo, m) for m in MODELS}, plan, repo, env)
            return asyncio.run(spec.run(ctx))
    except Exception as exc:  # the server did not start, or died: the other scenarios still run
        log(f"{name}: {traceback.format_exc()}")
        return [Row(name, "did not finish", checks=[Check("finished", type(exc).__name__, "yes", False)],
                    notes=[f"{name}: {str(exc)[-300:]}"])]


# -- the report --------------------------------------------------------------------------------------

COLUMNS = ["scenario", "case", "requests", "status codes", "server RSS MB: before / peak (+increase) / after",
           "small request waited s", "recovery s", "checks"]


def report(rows: list[Row], plan: Plan, names: list[str], argv: list[str]) -> str:
    lines = [f"# zooserve chaos run ({'dry run: small counts' if plan.dry else 'full run'}): {', '.join(names)}", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row.cells()) + " |" for row in rows]
    missed = [f"{r.scenario} {r.case}: {c}" for r in rows for c in r.checks if not c.ok]
    lines += ["", f"Checks missed: {len(missed)}" + "".join(f"\n- {m}" for m in missed)]
    notes = [n for r in rows for n in r.notes]
    if notes:
        lines += ["", "Answers worth reading (refusals of the large rows, failures elsewhere):", "",
                  *(f"- {n}" for n in notes[:60])]
    lines += ["", f"- command: `{record.command_line(__file__, argv)}`",
              f"- CPU: {record.hardware()}",
              f"- each scenario ran its own server with the default settings and ZOOSERVE_SHUTDOWN_DRAIN_S=0, except: "
              f"overload ZOOSERVE_MAX_QUEUE={plan.max_queue}; reload ZOOSERVE_REPOSITORY_CONTROL=true and an "
              f"admin key; sigterm drain {plan.drain_s:g} s, grace {plan.grace_s:g} s",
              f"- large: targets for accepted requests: peak RSS increase <= {PEAK_MB:.0f} MB, RSS after within "
              f"{AFTER_SHARE:.0%} of before ({plan.settle_s:g} s later), a small request to the same model "
              f"answered within {WAIT_S:g} s; RSS is the server process's (VmHWM after clear_refs, VmRSS every 10 ms)"]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", action="append", choices=list(SCENARIOS),
                   help="scenario to run (repeatable; default all, in the order listed above)")
    p.add_argument("--models", type=Path, default=ROOT / "models", help="model repository to serve (default models/)")
    p.add_argument("--dry-run", action="store_true", help="small counts and short windows: a smoke test in seconds")
    record.add_arguments(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    plan = DRY if args.dry_run else FULL
    names = [n for n in SCENARIOS if n in (args.scenario or SCENARIOS)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="zooserve-chaos-") as tmp:
        for name in names:
            log(f"scenario {name}")
            rows += run_scenario(name, args.models.resolve(), plan, Path(tmp) / name)
    text = report(rows, plan, names, argv)
    print(text)
    record.save_run(args, text, script=__file__, argv=argv, models=names)
    return 0 if all(c.ok for r in rows for c in r.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
