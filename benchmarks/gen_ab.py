"""Generation of two checkouts' code, burst by burst: does a change make streaming generation faster?

    git worktree add /tmp/before HEAD~1
    python benchmarks/gen_ab.py --against /tmp/before                    # island-lstm-int8, 32 streams
    python benchmarks/gen_ab.py --against /tmp/before --model island-lstm --prompts distinct --rounds 12

Two servers run at once on the same models, one with this checkout's code and one with the other's (its
directory on the server's PYTHONPATH); each is idle while the other is measured. A round measures, for
each server in turn (the order alternating round by round), raw onnxruntime stepping at B = streams and
then one burst of `--streams` generate_stream clients, exactly as gen_bench does. Each burst's ratio is
taken against the raw figure measured seconds before it, and the two codes are compared by the median of
the rounds' paired ratios (this / other): on these shared machines the speed drifts by a quarter within
seconds, far more than most changes move the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import record  # noqa: E402  (after the path fix above)
from benchmarks.gen_bench import (add_burst_arguments, raw_rows_per_s, server_env, server_options,  # noqa: E402
                                  stream_once)
from tests.service.serve_fixture import running_server  # noqa: E402


def checkout_commit(folder: Path) -> str:
    """The other checkout's commit, as the saved header gives this one's."""
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown (not a git checkout)"


def ab_report(args: argparse.Namespace, ratios: dict[str, list[float]], threads: int) -> str:
    this, other = ratios["this"], ratios["other"]
    paired = statistics.median(a / b for a, b in zip(this, other))
    lines = [f"gen_ab: {args.model}, {args.streams} streams of {args.tokens} tokens, prompts {args.prompts}, "
             f"{args.rounds} rounds, onnxruntime intra-op threads {threads} (the server's choice), against "
             f"`{args.against}` (commit {checkout_commit(args.against)})\n",
             "| code | median ratio to raw stepping | each round's, sorted |", "|---|---:|---|"]
    for name, label in (("this", "this checkout"), ("other", "--against")):
        lines.append(f"| {label} | {statistics.median(ratios[name]):.3f} | "
                     f"{', '.join(f'{x:.3f}' for x in sorted(ratios[name]))} |")
    lines.append(f"\nthis / --against, the median of the rounds' paired ratios: {paired:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", type=Path, required=True, help="the other checkout (its service/ is served)")
    add_burst_arguments(p)  # --models serves both servers
    p.add_argument("--rounds", type=int, default=12, help="bursts per server")
    p.add_argument("--dry-run", action="store_true", help="tiny counts: 2 streams, 16 tokens, 2 rounds")
    args = p.parse_args(argv)
    if args.dry_run:
        args.streams, args.tokens, args.rounds = 2, 16, 2
    if not (args.against / "service" / "cli.py").is_file():
        p.error(f"--against {args.against} is not a zooserve checkout (no service/cli.py)")
    env = server_env(None, args.streams)
    ratios: dict[str, list[float]] = {"this": [], "other": []}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / args.model).symlink_to((args.models / args.model).resolve())
        with running_server(repo, workdir=Path(tmp) / "this", env=env) as this, \
                running_server(repo, workdir=Path(tmp) / "other",
                               env=env | {"PYTHONPATH": str(args.against.resolve())}) as other:
            servers = {"this": this, "other": other}
            opts = server_options(env, this.base_url, args.model)
            for r in range(args.rounds):
                for name in (("this", "other") if r % 2 == 0 else ("other", "this")):
                    raw, _ = raw_rows_per_s(args.models / args.model / "1", args.streams, max(50, args.tokens), opts)
                    wall, tokens, _ = asyncio.run(stream_once(servers[name].base_url, args.model, args.streams,
                                                              args.tokens, args.prompts))
                    ratios[name].append(tokens / wall / raw)
    text = ab_report(args, ratios, opts.intra_op_num_threads)
    print(text)
    record.save_run(args, text, script=__file__, argv=argv, models=[args.model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
