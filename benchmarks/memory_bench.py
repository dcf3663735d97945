"""Memory and start-up of a model repository: ready time and RSS of one server, what each model adds, and
which onnxruntime options change a model's footprint.

    python benchmarks/memory_bench.py                    # models/: the default repository
    python benchmarks/memory_bench.py --repository models:models-extra --launches 3
    python benchmarks/memory_bench.py --venv /tmp/serve-venv   # servers run from a serving install; its size
    python benchmarks/memory_bench.py --dry-run          # one launch, no per-model table: a smoke test

server      `python -m service.cli` (one worker, default settings) on the repository: seconds from launch to
            /v2/health/ready == 200 (median of --launches), then VmRSS 1 s later and the peak (VmHWM). The
            python is --venv's when given (a serving install, as the image has: no test tools to import),
            else this one; either way the code is this checkout's.
per model   the same server with that model alone, its RSS at ready minus an empty server's (what each model
            costs), and its files on disk.
options     each model's session opened in this process with the server's options and with one change each
            (no CPU arena, no memory pattern, initializers outside the arena, no weight prepacking): the RSS a
            session adds, so each choice is measured rather than assumed.

Targets (issue 16): ready in at most 2 s and RSS at most 400 MB for the default repository with every model
loaded; a serving venv of at most 250 MB.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402  (after the path is set)
from zooserve.card import find_cards, load_card, repository_roots  # noqa: E402

READY_TARGET_S, RSS_TARGET_MB, VENV_TARGET_MB = 2.0, 400.0, 250.0
OPTIONS = {  # label -> how a variant differs from the server's session options
    "no CPU arena": lambda o: setattr(o, "enable_cpu_mem_arena", False),
    "no memory pattern": lambda o: setattr(o, "enable_mem_pattern", False),
    "initializers outside the arena": lambda o: o.add_session_config_entry(
        "session.use_device_allocator_for_initializers", "1"),
    "no prepacking": lambda o: o.add_session_config_entry("session.disable_prepacking", "1"),
}


def status_mb(pid: int | str, key: str) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(repository: str, timeout: float = 120.0, path: str = "/v2/health/ready",
           python: str = sys.executable) -> tuple[float, float, float]:
    """(seconds until GET `path` answers 200, RSS MB 1 s later, peak RSS MB) of one server on `repository`
    (an empty repository is never ready: wait for /v2/health/live then)."""
    port = free_port()
    env = dict(os.environ, ZOOSERVE_REPOSITORY=repository, ZOOSERVE_HOST="127.0.0.1", ZOOSERVE_PORT=str(port),
               ZOOSERVE_LOG_LEVEL="warning", PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, "-m", "service.cli"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"not ready after {timeout:.0f} s")
            time.sleep(0.005)
        ready = time.perf_counter() - t0
        time.sleep(1.0)
        return ready, status_mb(proc.pid, "VmRSS"), status_mb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(30)


def models_of(repository: str) -> dict[str, Path]:
    """Model name -> its folder, as the server finds them (the first root holding a name)."""
    found: dict[str, Path] = {}
    for card in find_cards(repository):
        found.setdefault(card.parent.parent.name, card.parent.parent)
    return found


def one_model_repository(tmp: Path, name: str, folder: Path | None) -> str:
    root = tmp / (name or "empty")
    root.mkdir()
    if folder is not None:
        (root / name).symlink_to(folder.resolve())
    return str(root)


def session_rss(onnx: Path, change) -> float:
    """RSS MB this process gains opening `onnx` with the server's options, changed by `change`."""
    import onnxruntime as ort

    from service.runtime.engine.session import serving_session_options
    from service.settings import Settings

    opts = serving_session_options(Settings(_env_file=None))
    if change:
        change(opts)
    gc.collect()
    before = status_mb("self", "VmRSS")
    sess = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    grown = status_mb("self", "VmRSS") - before
    del sess
    gc.collect()
    return grown


def option_rows(models: dict[str, Path]) -> list[str]:
    """Per model: the RSS a session adds with the server's options and with each variant (each in a fresh
    process, so that memory one session freed does not hide the next one's growth)."""
    rows = []
    for name, folder in models.items():
        newest = max((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        onnx = newest / load_card(newest).artifact.file
        figures = []
        for label in ["server's options", *OPTIONS]:
            code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.memory_bench import OPTIONS, "
                    f"session_rss; print(session_rss(__import__('pathlib').Path({str(onnx)!r}), "
                    f"OPTIONS.get({label!r})))")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
            figures.append(float(out.stdout.strip()))
        rows.append(f"| {name} | " + " | ".join(f"{f:+.0f}" for f in figures) + " |")
    return rows


def tree_mb(path: Path) -> float:
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir()) / 2**20


def report(args, launches, per_model, options, venv_mb) -> str:
    ready = statistics.median(r for r, _, _ in launches)
    rss = statistics.median(m for _, m, _ in launches)
    peak = max(h for _, _, h in launches)
    out = [f"# Memory and start-up: {args.repository}\n",
           f"- {len(models_of(args.repository))} models, every version the server loads by default (the newest), "
           f"one worker, default settings; {len(launches)} launches",
           f"- ready (s): {', '.join(f'{r:.2f}' for r, _, _ in launches)}; RSS 1 s after ready (MB): "
           f"{', '.join(f'{m:.0f}' for _, m, _ in launches)}; peak {peak:.0f} MB\n",
           "| check | measured | target | result |", "|---|---:|---:|---|",
           f"| ready, launch -> /v2/health/ready (median) | {ready:.2f} s | <= {READY_TARGET_S} s | "
           f"{'ok' if ready <= READY_TARGET_S else 'MISS'} |",
           f"| RSS 1 s after ready (median) | {rss:.0f} MB | <= {RSS_TARGET_MB:.0f} MB | "
           f"{'ok' if rss <= RSS_TARGET_MB else 'MISS'} |"]
    if venv_mb is not None:
        out.append(f"| serving venv ({args.venv}) | {venv_mb:.0f} MB | <= {VENV_TARGET_MB:.0f} MB | "
                   f"{'ok' if venv_mb <= VENV_TARGET_MB else 'MISS'} |")
    if per_model:
        out += ["", "What each model adds to an empty server's RSS (that model alone, at ready):", "",
                "| model | files MB | RSS + MB | ready s |", "|---|---:|---:|---:|", *per_model]
    if options:
        out += ["", "RSS (MB) one session adds in a fresh process, with the server's options and with one change each:",
                "", "| model | server's options | " + " | ".join(OPTIONS) + " |",
                "|---|" + "---:|" * (len(OPTIONS) + 1), *options]
    out.append(f"\n{record.hardware()}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repository", default="models", help="folder(s) as ZOOSERVE_REPOSITORY takes them")
    p.add_argument("--launches", type=int, default=5, help="server launches for the medians")
    p.add_argument("--venv", type=Path, help="a serving virtualenv (pip install . into a fresh one): its size, and the "
                                               "servers run from its python")
    p.add_argument("--no-per-model", action="store_true", help="skip the per-model and options tables")
    p.add_argument("--dry-run", action="store_true", help="one launch, no per-model or options tables")
    record.add_arguments(p)
    args = p.parse_args(argv)
    args.repository = os.pathsep.join(str((ROOT / r) if not Path(r).is_absolute() else Path(r))
                                      for r in repository_roots(args.repository))
    python = str(args.venv / "bin" / "python") if args.venv else sys.executable
    launches = [launch(args.repository, python=python) for _ in range(1 if args.dry_run else args.launches)]
    per_model, options = [], []
    if not (args.dry_run or args.no_per_model):
        models = models_of(args.repository)
        with tempfile.TemporaryDirectory() as tmp:
            _, empty, _ = launch(one_model_repository(Path(tmp), "", None), path="/v2/health/live", python=python)
            for name, folder in models.items():
                ready, rss, _ = launch(one_model_repository(Path(tmp), name, folder), python=python)
                per_model.append(f"| {name} | {tree_mb(folder):.1f} | {rss - empty:+.0f} | {ready:.2f} |")
            per_model.append(f"| (an empty server) | - | {empty:.0f} | - |")
        options = option_rows(models)
    venv_mb = tree_mb(args.venv) if args.venv else None
    text = report(args, launches, per_model, options, venv_mb)
    print(text)
    record.save_run(args, text, script=__file__, argv=argv, models=["repository"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
