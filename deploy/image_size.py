"""Estimate the size of the `serve` image without a Docker engine, and fail if it is over the target.

    python deploy/image_size.py [--venv DIR] [--base-mb 131] [--limit-mb 400]

The image is three layers that matter: the base image, /opt/venv copied from the serve-build stage, and
models/ copied from the build context. Two of them are measured here, from the Dockerfile itself:
- the venv: the serve-build stage's ENV and RUN lines are run as written, with /opt/venv and
  /tmp/constraints.txt pointed at a temporary directory (or --venv measures one built that way);
- the models: every file under each `COPY <context path> ...` of the serve stage that .dockerignore
  lets into the build context.
The base image cannot be measured here (no engine, no registry access); BASE_IMAGE_MB is a stated figure.
Sizes are apparent file sizes in decimal MB (what `docker image ls` counts for an overlay2 layer).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
# python:3.11.11-slim-bookworm, linux/amd64, unpacked: not measurable here (no engine, no registry access).
# Central figure: Debian 12 slim (about 75 MB) plus CPython 3.11 under /usr/local with pip and setuptools
# (about 55 MB; the local 3.11 install, unstripped, is 55 MB without tests, .pyc, site-packages and libpython.a).
# `docker image ls` figures published for python:3.11-slim reach about 150 MB: BASE_PESSIMISTIC_MB, printed
# alongside so that a margin that depends on the base figure shows.
BASE_IMAGE_MB = 131.0
BASE_PESSIMISTIC_MB = 150.0
LIMIT_MB = 400.0


# -- the Dockerfile: logical lines per stage --------------------------------------------------------------

def stages(dockerfile: Path) -> dict[str, list[tuple[str, str]]]:
    """{stage name: [(INSTRUCTION, rest), ...]}, backslash continuations joined, comments dropped."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", dockerfile.read_text())
    out: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in (ln.strip() for ln in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            current = out.setdefault(rest.split()[-1] if " AS " in rest.upper() else rest, [])
        elif current is not None:
            current.append((word.upper(), rest.strip()))
    return out


def env_of(lines: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for word, rest in lines:
        if word == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", rest))
    return env


# -- .dockerignore ---------------------------------------------------------------------------------------

def _regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over a context-relative path; it
    also matches everything under a matching directory."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            c = pattern[i]
            out += "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
            i += 1
    return re.compile(out + "(?:/.*)?")


def ignore_rules(path: Path) -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in path.read_text().splitlines() if path.exists() else []:
        line = line.strip()
        if line and not line.startswith("#"):
            keep = line.startswith("!")
            rules.append((keep, _regex(os.path.normpath(line.lstrip("!")).lstrip("/"))))
    return rules


def ignored(rel: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """The last matching rule wins, as in Docker."""
    out = False
    for keep, rx in rules:
        if rx.fullmatch(rel):
            out = not keep
    return out


def context_files(src: str, rules) -> list[Path]:
    base = ROOT / src
    files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file() or p.is_symlink())
    return [p for p in files if not ignored(p.relative_to(ROOT).as_posix(), rules)]


# -- measuring ---------------------------------------------------------------------------------------------

def tree_bytes(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


def build_venv(build: list[tuple[str, str]], rules, work: Path, python: str) -> Path:
    """Run the serve-build stage's COPY and RUN lines in `work`: WORKDIR is work/src, absolute paths
    (/opt/venv, /tmp/constraints.txt) are moved under work/, and `python` is the given interpreter."""
    src, venv, bindir = work / "src", work / "opt/venv", work / "bin"
    bindir.mkdir(parents=True)
    (bindir / "python").symlink_to(python)
    env = {**os.environ, **env_of(build), "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    moved = {"/opt/venv": str(venv)}
    for word, rest in build:
        if word == "COPY":
            *sources, dest = [a for a in rest.split() if not a.startswith("--")]
            to_dir = dest.endswith("/") or len(sources) > 1
            target = work / dest.lstrip("/") if dest.startswith("/") else src / dest
            if dest.startswith("/"):
                moved[dest] = str(target)
            for s in sources:
                for f in context_files(s, rules):
                    if (ROOT / s).is_dir():
                        to = target / f.relative_to(ROOT / s)
                    else:
                        to = target / f.name if to_dir else target
                    to.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, to)
        elif word == "RUN":
            for path, there in moved.items():
                rest = rest.replace(path, there)
            done = subprocess.run(["sh", "-ec", rest], cwd=src, env=env, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"image_size: the serve-build RUN line failed ({done.returncode}):\n{rest}\n"
                         f"{done.stdout[-4000:]}{done.stderr[-4000:]}")
    return venv


def distributions(venv: Path) -> list[tuple[str, int]]:
    """(name-version, bytes of the files its RECORD lists that exist), largest first."""
    out = []
    for record in venv.glob("lib/python*/site-packages/*.dist-info/RECORD"):
        site = record.parent.parent
        size = 0
        for line in record.read_text().splitlines():
            p = site / line.rsplit(",", 2)[0]
            if p.exists() or p.is_symlink():
                size += p.lstat().st_size
        out.append((record.parent.name.removesuffix(".dist-info"), size))
    return sorted(out, key=lambda t: -t[1])


def model_rows(serve: list[tuple[str, str]], rules) -> tuple[list[tuple[str, int, bool]], int]:
    """Per <model>/<version> folder of each context COPY: (folder, bytes, copied?) and the copied total."""
    rows, total = [], 0
    for word, rest in serve:
        if word != "COPY" or "--from=" in rest:
            continue
        for s in [a for a in rest.split() if not a.startswith("--")][:-1]:
            kept = set(context_files(s, rules))
            for folder in sorted(p for p in (ROOT / s).glob("*/*") if p.is_dir()):
                files = [f for f in folder.rglob("*") if f.is_file()]
                copied = [f for f in files if f in kept]
                # A folder left out shows what it would have cost; one let in, what it costs.
                size = sum(f.lstat().st_size for f in copied or files)
                rows.append((folder.relative_to(ROOT).as_posix(), size, bool(copied)))
            total += sum(f.lstat().st_size for f in kept)
    return rows, total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--venv", type=Path, help="measure this venv (built as the serve-build stage does) instead")
    ap.add_argument("--python", default=sys.executable, help="interpreter standing in for the base image's")
    ap.add_argument("--base-mb", type=float, default=BASE_IMAGE_MB, help="base image size (not measurable here)")
    ap.add_argument("--limit-mb", type=float, default=LIMIT_MB)
    ap.add_argument("--top", type=int, default=8, help="distributions listed one by one")
    args = ap.parse_args(argv)

    all_stages = stages(ROOT / "Dockerfile")
    rules = ignore_rules(ROOT / ".dockerignore")
    with tempfile.TemporaryDirectory(prefix="zooserve-image-") as tmp:
        venv = args.venv or build_venv(all_stages["serve-build"], rules, Path(tmp), args.python)
        venv_bytes, dists = tree_bytes(venv), distributions(venv)
    rows, model_bytes = model_rows(all_stages["serve"], rules)
    total = args.base_mb * MB + venv_bytes + model_bytes

    if args.venv:
        how = f"measured: {args.venv}"
    else:
        pyver = subprocess.run([args.python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                               capture_output=True, text=True).stdout.strip()
        how = f"the serve-build RUN lines, CPython {pyver} (the image's: 3.11.11)"
    worst_base = max(BASE_PESSIMISTIC_MB, args.base_mb)
    print("serve image estimate\n\n| part | MB | how |\n| --- | ---: | --- |")
    print(f"| base python:3.11.11-slim-bookworm | {args.base_mb:.1f} | stated (BASE_IMAGE_MB), not measured |")
    print(f"| /opt/venv | {venv_bytes / MB:.1f} | {how} |")
    for name, size in dists[: args.top]:
        print(f"|   {name} | {size / MB:.1f} | RECORD |")
    rest = venv_bytes - sum(s for _, s in dists[: args.top])
    print(f"|   {len(dists) - args.top} more distributions, scripts, pyvenv.cfg | {rest / MB:.1f} | |")
    print(f"| /srv/models | {model_bytes / MB:.1f} | context files after .dockerignore |")
    for folder, size, copied in rows:
        print(f"|   {folder} | {size / MB:.1f} | {'copied' if copied else 'left out by .dockerignore'} |")
    print(f"| **total** | **{total / MB:.1f}** | target < {args.limit_mb:.0f} |")
    worst = total + (worst_base - args.base_mb) * MB
    print(f"| total with a {worst_base:.0f} MB base | {worst / MB:.1f} | the largest published base figure |")
    if total > args.limit_mb * MB:
        print(f"\nimage_size: {total / MB:.1f} MB is over the {args.limit_mb:.0f} MB target", file=sys.stderr)
        return 1
    print(f"\nimage_size: {total / MB:.1f} MB, {args.limit_mb - total / MB:.1f} MB under the target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
