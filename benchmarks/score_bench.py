"""Scoring benchmark: how fast /score reads a text with the n-gram models, in process and over HTTP.

    python benchmarks/score_bench.py                 # island-ngram-word3 and island-ngram-char, 20,000 chars
    python benchmarks/score_bench.py --dry-run       # 2,000 characters, one repeat: a smoke test in seconds

text        --chars characters of --text (data/mysterious_island.txt), from the first paragraph break after the
            middle of the file.
in-process  the repository and the served model as the server builds them (`ModelRepository`: the card's
            checks, the session with the server's options, the model's batcher), in this process, scoring as
            the route does (`ServedModel.score`, the answer's dict included) without HTTP:
            tokens/s = scored tokens / the call's time.
HTTP        `python -m service.cli` in a subprocess on 127.0.0.1, one client POSTing /v1/models/{m}/score
            {"text": ...} on a kept-alive connection, one request at a time; time from sending the request
            to the answer's last byte.
load        a fresh process per model and repeat loads that model alone into a repository: its load time
            (`ServedModel.load_seconds`: files read and sha256-checked, session created and warmed) and the
            resident memory the load added (VmRSS after minus before).

Every figure is the median of --repeats runs. Targets (issue 16): in process >= 200k tokens/s, over HTTP
>= 50k tokens/s for a 20,000-character text.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
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
from zooserve.card import model_folder  # noqa: E402
from tests.service.serve_fixture import HOST, running_server  # noqa: E402

MODELS = ["island-ngram-word3", "island-ngram-char"]
TARGETS = {"in_process": 200_000, "http": 50_000}  # tokens/s, at least


def excerpt(path: Path, chars: int) -> str:
    corpus = path.read_text(encoding="utf-8")
    start = corpus.index("\n\n", len(corpus) // 2) + 2  # a paragraph start in the middle of the book
    return corpus[start:start + chars]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _repository(models: Path, names: list[str]):
    from service.runtime.repository.repository import ModelRepository
    from service.settings import Settings

    repo = ModelRepository(Settings(repository=models))
    for name in names:
        await repo.load(name)
    return repo


async def in_process(models: Path, model: str, text: str, repeats: int) -> tuple[int, float]:
    """(tokens scored, median seconds of `served.score(text)`) with the model loaded as the server loads it."""
    repo = await _repository(models, [model])
    try:
        served = repo.get(model)
        served.start()
        tokens = (await served.score(text, timeout_s=60))["token_count"]  # the first call warms the path
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            await served.score(text, timeout_s=60)
            times.append(time.perf_counter() - t0)
        return tokens, statistics.median(times)
    finally:
        await repo.close()


def load_probe(models: Path, model: str) -> dict:
    """In this (fresh) process: load one model; its load time and the RSS the load added."""
    async def probe():
        from service.runtime.repository.repository import ModelRepository
        from service.settings import Settings

        repo = ModelRepository(Settings(repository=models))  # onnxruntime and the service imported
        before = rss_mb()
        await repo.load(model)
        doc = {"load_s": repo.get(model).load_seconds, "rss_mb": rss_mb() - before}
        await repo.close()
        return doc
    return asyncio.run(probe())


def load_figures(models: Path, model: str, repeats: int) -> tuple[float, float]:
    """Median load seconds and RSS added (MB) over `repeats` fresh processes."""
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, __file__, "--models", str(models), "--load-probe", model],
                             capture_output=True, text=True, check=True, timeout=120)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return statistics.median(r["load_s"] for r in runs), statistics.median(r["rss_mb"] for r in runs)


def over_http(port: int, model: str, text: str, repeats: int) -> tuple[int, float]:
    """(tokens scored, median seconds per POST /score) on one kept-alive connection."""
    body = json.dumps({"text": text}).encode()
    conn = http.client.HTTPConnection(HOST, port, timeout=120)

    def post() -> bytes:
        conn.request("POST", f"/v1/models/{model}/score", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"/score {model}: {resp.status} {answer[:300]!r}")
        return answer

    try:
        tokens = json.loads(post())["token_count"]  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            post()
            times.append(time.perf_counter() - t0)
        return tokens, statistics.median(times)
    finally:
        conn.close()


def verdict(value: float, target: float) -> str:
    return "ok" if value >= target else "MISS"


def report(args: argparse.Namespace, chars: int, rows: list[str]) -> str:
    return "\n".join([
        f"score_bench: a {chars:,}-character text of {args.text.name}, median of {args.repeats}; {cpu.describe()}\n",
        "| model | tokens | in-process ms | in-process tokens/s | target | | HTTP ms | HTTP tokens/s | target | "
        "| load s | RSS +MB |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|", *rows])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=os.pathsep.join(str(ROOT / r) for r in ("models", "models-extra")),
                   help="model repository: a folder or several joined by ':' (default models:models-extra)")
    p.add_argument("--model", action="append", help=f"models to score with (default {', '.join(MODELS)})")
    p.add_argument("--text", type=Path, default=ROOT / "data" / "mysterious_island.txt", help="where the text comes from")
    p.add_argument("--chars", type=int, default=20_000, help="characters of text per request")
    p.add_argument("--repeats", type=int, default=7, help="runs per figure (the median is shown)")
    p.add_argument("--load-repeats", type=int, default=3, help="fresh processes per load figure")
    p.add_argument("--dry-run", action="store_true", help="2,000 characters, one repeat of everything")
    p.add_argument("--load-probe", metavar="MODEL", help=argparse.SUPPRESS)  # the load subprocess's mode
    record.add_arguments(p)
    args = p.parse_args(argv)
    if args.load_probe:
        print(json.dumps(load_probe(args.models, args.load_probe)))
        return 0
    models = args.model or MODELS
    if args.dry_run:
        args.chars, args.repeats, args.load_repeats = 2_000, 1, 1
    text = excerpt(args.text, args.chars)

    results = {}
    for m in models:
        tokens, seconds = asyncio.run(in_process(args.models, m, text, args.repeats))
        results[m] = {"tokens": tokens, "in_process": seconds, "load": load_figures(args.models, m, args.load_repeats)}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"  # the measured models only
        repo.mkdir()
        for m in models:
            (repo / m).symlink_to(model_folder(args.models, m).resolve())
        with running_server(repo, workdir=Path(tmp) / "run", env={"ZOOSERVE_LOG_LEVEL": "warning"}) as server:
            for m in models:
                tokens, seconds = over_http(server.port, m, text, args.repeats)
                assert tokens == results[m]["tokens"], "HTTP and in-process scoring read the text differently"
                results[m]["http"] = seconds

    rows = []
    for m, r in results.items():
        local, remote = r["tokens"] / r["in_process"], r["tokens"] / r["http"]
        rows.append(f"| {m} | {r['tokens']:,} | {r['in_process'] * 1e3:,.1f} | {local:,.0f} | "
                    f"{TARGETS['in_process']:,} | {verdict(local, TARGETS['in_process'])} | {r['http'] * 1e3:,.1f} | "
                    f"{remote:,.0f} | {TARGETS['http']:,} | {verdict(remote, TARGETS['http'])} | "
                    f"{r['load'][0]:.3f} | {r['load'][1]:,.0f} |")
    text_report = report(args, len(text), rows)
    print(f"\n{text_report}")
    record.save_run(args, text_report, script=__file__, argv=argv, models=models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
