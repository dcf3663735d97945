"""Results table for a model repository: accuracy, size, training time, and inference speed measured now,
onnxruntime against PyTorch, at batch 1 and batch 32.

    zooserve report                              # every model under models/, as Markdown on stdout
    zooserve report --readme docs/results.md     # also replace the text between the results markers
    zooserve report --threads 2 --output results.md
    zooserve report --model fashion-alexnet --model fashion-mlp   # only these
    zooserve report --dry-run                    # 3 repeats, at most 2 models: a smoke test

Only the newest version of each model name is reported: `<runs>/<name>/last.pt` is overwritten by every
training run, so older versions have no weights to compare against. The PyTorch side is the float model
rebuilt from the card's arch + model_config with the checkpoint's "best_model" state_dict (the weights the
ONNX file was exported from). INT8 variants have no PyTorch counterpart, so only their ORT columns are filled.

Threads default to 1 for both runtimes: the service runs one session per worker, the numbers are far less
noisy on a shared machine, and it is the like-for-like comparison (set --threads to compare at N).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from zooserve import cpu
from zooserve.card import SHIPPED_REPOSITORIES, ModelCard, find_cards, load_card
from training.zoo import build_config

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
NA = "n/a"
BATCHES = (1, 32)
HEADER = ["Model", "Family", "Test acc.", "Params", "ONNX size", "Train time",
          "ORT b1 (ms)", "PyTorch b1 (ms)", "Speed-up b1", "ORT b32 (ms)", "PyTorch b32 (ms)", "Speed-up b32"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=SHIPPED_REPOSITORIES,
                   help="model repository: a folder, or several joined by ':' (default: models:models-extra)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="where the training checkpoints are")
    p.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="report only this model (repeat for several; default: every image classifier)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for ORT and torch (default 1)")
    p.add_argument("--repeats", type=int, default=50,
                   help="timed runs at batch 1 (batch 32 gets a fifth of them, at least 3)")
    p.add_argument("--output", type=Path, help="also write the Markdown to this file")
    p.add_argument("--readme", type=Path, help=f"replace the text between {BEGIN} and {END} in this file")
    p.add_argument("--dry-run", action="store_true", help="3 repeats and at most 2 models")
    args = p.parse_args(argv)
    if args.threads < 1 or args.repeats < 1:
        p.error("--threads and --repeats must be at least 1")
    return args


def latest_cards(repository: Path) -> list[tuple[Path, ModelCard]]:
    """(model dir, card) for the newest version of each name, sorted by name."""
    newest: dict[str, tuple[Path, ModelCard]] = {}
    for path in find_cards(repository):
        card = load_card(path)
        if card.name not in newest or card.version > newest[card.name][1].version:
            newest[card.name] = (path.parent, card)
    return [newest[name] for name in sorted(newest)]


def torch_model(card: ModelCard, runs: Path, build=None) -> tuple[nn.Module | None, str | None]:
    """(the float model, a footnote or None): with its checkpoint's weights; without a checkpoint (a fresh
    clone has none: `runs/` is not in the repository), the card's architecture at fresh weights, which times
    the same (speed does not depend on the values); (None, why not) when there is nothing to time.

    `build(card)` makes the untrained module; by default the zoo's image architecture the card names."""
    if card.quantization is not None:
        return None, "an INT8 graph has no PyTorch counterpart"
    if card.training.torch is None:  # e.g. fashion-mlp, written in numpy
        return None, "trained without PyTorch, so there is no PyTorch model to time"
    build = build or (lambda c: build_config(c.training.arch, c.training.model_config_).build())
    ckpt = runs / card.name / "last.pt"
    if not ckpt.is_file():
        return build(card).eval(), (f"PyTorch timed at freshly initialised weights of the card's architecture "
                                    f"(no checkpoint {ckpt} here)")
    try:
        # weights_only: checkpoints are plain tensors and values; never unpickle code from disk.
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model = build(card)
        model.load_state_dict(state["best_model"])
    except Exception as exc:  # a stale or foreign checkpoint must not sink the whole report
        return None, f"checkpoint {ckpt} does not fit the card ({type(exc).__name__}: {exc})"
    return model.eval(), None


def footnote(card: ModelCard, model: nn.Module | None, note: str) -> str:
    return f"{card.name}: " + (f"PyTorch columns n/a: {note}." if model is None else f"{note}.")


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1  # the graphs are sequential chains; a second pool only adds contention
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def interleaved_medians(fns: list, repeats: int, warmup: int) -> list[float]:
    """Median ms of each callable. Runs alternate so both runtimes see the same background load."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) * 1e3 for ts in times]


def benchmark(model_dir: Path, card: ModelCard, model: nn.Module | None, threads: int,
              repeats: dict[int, int], warmup: int) -> tuple[dict[int, tuple[float, float | None]], bool]:
    """{batch: (ORT ms, PyTorch ms or None)}, and whether both runtimes agree on the same inputs."""
    sess = ort_session(model_dir / card.artifact.file, threads)
    spec = card.inputs[0]
    rng = np.random.default_rng(0)
    results, agree = {}, True
    for batch in BATCHES:
        x = rng.standard_normal([batch if d == -1 else d for d in spec.shape], dtype=np.float32)
        fns = [lambda: sess.run(None, {spec.name: x})]
        if model is not None:
            xt = torch.from_numpy(x)
            fns.append(lambda: model(xt))
            # A checkpoint written after the export (a run still training) would time other weights.
            agree &= np.allclose(sess.run(None, {spec.name: x})[0], model(xt).numpy(), rtol=1e-3, atol=1e-3)
        ms = interleaved_medians(fns, repeats[batch], warmup)
        results[batch] = (ms[0], ms[1] if model is not None else None)
    return results, agree


def accuracy_cell(card: ModelCard) -> str:
    acc = next((m.accuracy for m in card.metrics if m.split == "test"), None)
    return NA if acc is None else f"{acc:.2%}"


def size(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.2f} MB"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds / 60:.2f} min"


def ms(value: float | None) -> str:
    return NA if value is None else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def speed_cells(timings: dict[int, tuple[float, float | None]]) -> list[str]:
    """ORT ms, PyTorch ms and the speed-up, for each batch size."""
    cells = []
    for batch in BATCHES:
        ort_ms, torch_ms = timings[batch]
        cells += [ms(ort_ms), ms(torch_ms), NA if torch_ms is None else f"{torch_ms / ort_ms:.2f}x"]
    return cells


def row(card: ModelCard, timings: dict[int, tuple[float, float | None]]) -> list[str]:
    return [card.name, card.family, accuracy_cell(card), f"{card.training.parameters:,}", size(card.artifact.bytes),
            minutes(card.training.wall_time_s), *speed_cells(timings)]


def markdown_table(rows: list[list[str]]) -> str:
    lines = [HEADER, ["---"] * 2 + ["---:"] * (len(HEADER) - 2)] + rows
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def footer(notes: list[str], threads: int, repeats: dict[int, int], warmup: int,
           inputs: str = "random inputs of the card's shape") -> str:
    runs = " and ".join(f"{n} runs at batch {b}" for b, n in repeats.items())
    lines = [f"Inference: median milliseconds per batch over {runs} (after {warmup} warm-up), {inputs}, "
             "ORT and PyTorch runs interleaved; speed-up = PyTorch ms / ORT ms "
             "(above 1x: onnxruntime is faster).", ""]
    if notes:
        lines += [f"- {note}" for note in notes] + [""]
    lines.append(f"Threads: {threads} (onnxruntime intra-op and torch.set_num_threads) · onnxruntime "
                 f"{ort.__version__} · torch {torch.__version__} · CPU: {cpu.describe()}")
    return "\n".join(lines)


def splice(text: str, block: str, source: Path, begin: str = BEGIN, end: str = END) -> str:
    """`text` with everything between the `begin` and `end` markers replaced by `block`."""
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"{source} needs the markers {begin} and {end} (in that order) around the results")
    return text[:i + len(begin)] + "\n" + block + "\n" + text[j:]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.readme:  # check the markers now, not after minutes of timing
        try:
            splice(args.readme.read_text(), "", args.readme)
        except (OSError, ValueError) as exc:
            print(f"zooserve report: error: {exc}", file=sys.stderr)
            return 2
    # Classifiers only: the language models have their own table (zooserve lm-report).
    entries = [e for e in latest_cards(args.models) if e[1].task == "image-classification"
               and (not args.model or e[1].name in args.model)]
    if not entries:
        print(f"zooserve report: error: no model cards under {args.models}", file=sys.stderr)
        return 1
    if args.dry_run:
        entries = entries[:2]
    n = 3 if args.dry_run else args.repeats
    repeats = {1: n, 32: n if args.dry_run else max(3, n // 5)}
    warmup = 1 if args.dry_run else 5
    torch.set_num_threads(args.threads)  # same budget as ORT, or the comparison is unfair

    rows, notes = [], []
    with torch.inference_mode():
        for model_dir, card in entries:
            print(f"timing {card.name} v{card.version} ...", file=sys.stderr, flush=True)
            model, note = torch_model(card, args.runs)
            timings, agree = benchmark(model_dir, card, model, args.threads, repeats, warmup)
            rows.append(row(card, timings))
            if note:
                notes.append(footnote(card, model, note))
            elif not agree:
                notes.append(f"{card.name}: the checkpoint's weights do not reproduce model.onnx (newer training "
                             "run?); the PyTorch timings are of the same architecture with other weights.")
    block = markdown_table(rows) + "\n\n" + footer(notes, args.threads, repeats, warmup)
    print(block)
    if args.output:
        args.output.write_text(block + "\n")
    if args.readme:
        args.readme.write_text(splice(args.readme.read_text(), block, args.readme))
    return 0


if __name__ == "__main__":
    sys.exit(main())
