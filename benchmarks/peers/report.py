"""The peers benchmark's rows, ratios, check and Markdown report."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks import serve_bench as sb

ORDER = ("bare", "mlserver", "litserve", "zooserve")
PEERS = ("mlserver", "litserve")


@dataclass
class PeerRow(sb.Row):
    server_cpu_s: float | None = None  # CPU seconds of the server's process tree over the measured window
    processes: int | None = None  # processes in that tree

    @property
    def cores(self) -> float | None:
        return self.server_cpu_s / self.seconds if self.server_cpu_s is not None and self.seconds > 0 else None


def ratios(rows: list[PeerRow]) -> dict[tuple[str, int], dict[str, float]]:
    """(model, connections) -> {"bare": zooserve req/s / bare req/s, "mlserver": ..., "litserve": ...}."""
    by = {(r.target, r.model, r.concurrency): r for r in rows}
    out = {}
    for (target, model, c), zoo in by.items():
        if target != "zooserve":
            continue
        out[(model, c)] = {t: zoo.rps / by[(t, model, c)].rps for t in ORDER[:-1]
                           if (t, model, c) in by and by[(t, model, c)].rps > 0}
    return out


def checks(rows: list[PeerRow]) -> list[tuple[str, int, float, str, float, bool]]:
    """Per (model, connections) with a peer measured: (model, c, zooserve req/s, best peer, its req/s, ok).
    ok: zooserve served more requests per second than every peer, without errors."""
    by = {(r.target, r.model, r.concurrency): r for r in rows}
    out = []
    for (target, model, c), zoo in by.items():
        peers = [by[(p, model, c)] for p in PEERS if (p, model, c) in by]
        if target == "zooserve" and peers:
            best = max(peers, key=lambda r: r.rps)
            out.append((model, c, zoo.rps, best.target, best.rps, zoo.rps > best.rps and not zoo.errors))
    return out


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def render(info: dict, rows: list[PeerRow], extra: dict) -> str:
    lines: list[str] = []
    p = lines.append
    p(f"# zooserve against MLServer and LitServe ({extra['mode']} run)\n")
    p(f"- machine: {info['cpu']} ({info['isa']}), {info['logical_cpus']} logical CPUs ({info['usable_cpus']} usable), {info['os']}")
    p(f"- zooserve: python {info['python']}; " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    for peer, versions in extra["peer_versions"].items():
        p(f"- {peer} venv: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    ort = extra["ort"]
    p(f"- onnxruntime session options, the same for every target (zooserve's serving_session_options here): "
      f"intra-op threads {ort['intra_op_num_threads']}, inter-op threads {ort['inter_op_num_threads']} "
      f"(0 = onnxruntime's default), {ort['graph_optimization_level']}, "
      + ", ".join(f"{k} {v}" for k, v in ort["config"].items()))
    la0, la1 = info.get("loadavg_start"), info.get("loadavg_end")
    if la0 and la1:
        p(f"- load average at start {la0[0]:.2f} / end {la1[0]:.2f} (1 min): other work on the machine skews everything")
    plan = extra["plan"]
    p(f"- plan: connections {plan['concurrency']}, {plan['requests']} requests per level (cap {plan['max_seconds']}s) "
      f"after {plan['warmup']} warm-up requests; one server at a time; every request a V2 JSON body with one "
      f"1x1x28x28 FP32 image; load generator: serve_bench.py's asyncio HTTP/1.1 client in the benchmark "
      f"process, one keep-alive connection each, sharing the CPUs with the server")
    p(f"- total wall time {extra['wall_s']:.0f}s\n")
    p("| target | configuration |")
    p("|---|---|")
    for t in ORDER:
        if t in extra["configs"]:
            p(f"| {t} | {extra['configs'][t]} |")

    p("\n| target | model | connections | req/s | p50 ms | p99 ms | errors | server CPU (cores) | server processes |")
    p("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (r.model, r.concurrency, ORDER.index(r.target))):
        p(f"| {r.target} | {r.model} | {r.concurrency} | {r.rps:.0f} | {r.pct(50):.2f} | {r.pct(99):.2f} | "
          f"{r.errors} | {_f(r.cores, '.2f')} | {_f(r.processes, 'd')} |")
    p("\nerrors: non-200 answers, plus a wrong answer to the checked first request of the level (the predicted "
      "class against onnxruntime in the benchmark process; bare: the row count). server CPU: utime + stime "
      "of the server's whole process tree (/proc) over the level's wall time.")

    p("\n## zooserve's req/s over each target's, same run\n")
    p("| model | connections | zooserve req/s | vs bare | vs mlserver | vs litserve |")
    p("|---|---:|---:|---:|---:|---:|")
    zoo = {(r.model, r.concurrency): r for r in rows if r.target == "zooserve"}
    for (model, c), rs in sorted(ratios(rows).items()):
        p(f"| {model} | {c} | {zoo[(model, c)].rps:.0f} | " + " | ".join(_f(rs.get(t), ".2f") for t in ORDER[:-1]) + " |")

    found = checks(rows)
    if found:
        p("\n## Check: zooserve ahead of both peers\n")
        p("| model | connections | zooserve req/s | best peer | its req/s | result |")
        p("|---|---:|---:|---|---:|---|")
        for model, c, z, peer, best, ok in found:
            p(f"| {model} | {c} | {z:.0f} | {peer} | {best:.0f} | {'ok' if ok else 'MISS'} |")
    return "\n".join(lines)
