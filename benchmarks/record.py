"""Save one benchmark run as a dated file: `benchmarks/results/<YYYY-MM-DD>-<script>-<description>.md`.

The file holds the report the script printed, under what it takes to trust and repeat it: the exact command
line, the date (UTC), the git commit (and whether the checkout had uncommitted changes) and the machine (CPU
model, CPU count, onnxruntime version and the ISA level that picks onnxruntime's kernels, `zooserve.cpu`).
A run is never overwritten: a second run of the same day and description gets `-2`, then `-3`, ...
The benchmark scripts' `--save` (`add_arguments`, `save_run`) writes it; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from zooserve import cpu

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parents[1]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--save", nargs="?", const=RESULTS, type=Path, metavar="DIR",
                   help="also write the report, with the command line, date, commit and hardware, to "
                        "DIR/<YYYY-MM-DD>-<script>-<description>.md (DIR default: benchmarks/results/)")
    p.add_argument("--description", help="the <description> in the saved file's name (default: the models "
                                         "measured, and dry-run for a dry run)")


def slug(text: str) -> str:
    """'fashion-lenet, c=64 (JSON)' -> 'fashion-lenet-c-64-json': safe in a file name and in a URL."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "run"


def _shown(path: str) -> str:
    """A path as the reader would type it: relative to the checkout when inside it."""
    p = Path(path).absolute()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else path


def command_line(script: str, argv: list[str]) -> str:
    return shlex.join([_shown(sys.executable), _shown(script), *argv])


def commit() -> str:
    """The checkout's commit, e.g. "0623417" or "0623417 with uncommitted changes"."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head} with uncommitted changes" if dirty else head


def hardware() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        ort = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        ort = "not installed"
    return (f"{cpu.cpu_name()}, {os.cpu_count()} logical CPUs ({usable} usable), onnxruntime {ort}, "
            f"ISA level {cpu.isa_level()}")


def save(report: str, *, script: str, argv: list[str], description: str, folder: Path = RESULTS,
         now: datetime | None = None) -> Path:
    """Write `report` (Markdown, as printed) under its header; return the new file's path."""
    now = now or datetime.now(timezone.utc)
    name = Path(script).stem
    header = (f"# {name}: {description}, {now:%Y-%m-%d}\n\n"
              f"- command: `{command_line(script, argv)}`\n"
              f"- date: {now:%Y-%m-%d %H:%M:%S} UTC\n"
              f"- commit: {commit()}\n"
              f"- hardware: {hardware()}\n\n")
    folder.mkdir(parents=True, exist_ok=True)
    stem, n = f"{now:%Y-%m-%d}-{name}-{slug(description)}", 1
    while True:
        path = folder / (f"{stem}.md" if n == 1 else f"{stem}-{n}.md")
        try:
            with path.open("x") as f:  # "x": never overwrite an earlier run, even one saved a moment ago
                f.write(header + report.rstrip("\n") + "\n")
            return path
        except FileExistsError:
            n += 1


def save_run(args: argparse.Namespace, report: str, *, script: str, argv: list[str], models: list[str]) -> None:
    """What `--save` does in every benchmark script (`args` from a parser with `add_arguments` and `--dry-run`)."""
    if args.save:
        description = args.description or " ".join([*models, *(["dry-run"] if args.dry_run else [])])
        path = save(report, script=script, argv=argv, description=description, folder=args.save)
        print(f"saved {_shown(str(path))}", file=sys.stderr)
