"""Train a char-level recurrent LM (Elman RNN, LSTM or GRU), export its stepping graph, and write its card.

    zooserve train-rnn --recipe island-lstm                # the corpus: data/mysterious_island.txt
    zooserve train-rnn --cell gru --hidden-size 256 --epochs 3 --name my-gru --corpus my.txt

Training reads the training split as one stream, in `--batch-size` parallel rows and windows of `--bptt`
tokens, carrying the state between windows (truncated BPTT) and clipping the gradient norm. The card's
figures are measured on the exported graph: the validation and test splits are each scored as one
stream from a zero state, in nats/char, bits/char and perplexity. `--int8` adds NAME-int8, with dynamic
INT8 quantization of the weights, and records its cross-entropy change.

Outputs: `<out>/<name>/<version>/{model.onnx, model.json, vocab.json}`; under `<runs>/<name>/` the
checkpoint (`last.pt`, for `--resume`), `history.json` and `curves.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from training.data.corpus import CORPUS_HELP, END_MARKER, TITLE_LINE
from training.engine import distributed
from training.engine.history import plot_curves, save_json
from training.engine.optim import OptimConfig
from training.engine.trainer import TrainConfig, fit
from training.export import lm_steps, rnn_export
from training.export import isa_check, onnx_eval
from training.export.card import next_version, training_section, write_card, write_quantized_card
from training.export.onnx_export import file_digest, session
from training.export.quantize import DYNAMIC_METHOD, quantize_dynamic_int8
from training.recipes import LM_RECIPES, LMRecipe
from training.tasks import language_model as task
from training.tasks.rnn_lm import StreamBatches, TBPTTObjective
from training.zoo.rnnlm import CELLS, RNNLMConfig

DRY_RUN_CHARS = 20_000
MODEL_FLAGS = ("cell", "embedding_dim", "hidden_size", "layers", "dropout", "tie_weights")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", choices=sorted(LM_RECIPES))
    p.add_argument("--corpus", help=CORPUS_HELP)
    p.add_argument("--title-line", default=TITLE_LINE)
    p.add_argument("--end-marker", default=END_MARKER)
    p.add_argument("--cell", choices=sorted(CELLS))
    p.add_argument("--embedding-dim", type=int)
    p.add_argument("--hidden-size", type=int)
    p.add_argument("--layers", type=int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--tie-weights", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--bptt", type=int, help="truncated-BPTT window in tokens")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="parallel rows of the training stream")
    p.add_argument("--lr", type=float)
    p.add_argument("--clip-grad", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--name")
    p.add_argument("--out", type=Path)
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--version", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--int8", action="store_true", help="also write NAME-int8 (dynamic INT8 quantization)")
    isa_check.add_argument(p)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true",
                   help=f"one short epoch on the first {DRY_RUN_CHARS} chars of each split; writes under <runs>/dry-run/")
    return p.parse_args(argv)


def resolve(args) -> tuple[str, LMRecipe, dict, TrainConfig, OptimConfig]:
    recipe = LM_RECIPES[args.recipe] if args.recipe else LMRecipe(description="")
    model = {**recipe.model, **{k: getattr(args, k) for k in MODEL_FLAGS if getattr(args, k) is not None}}
    train = {**recipe.train, **{k: getattr(args, k) for k in ("epochs", "batch_size", "clip_grad", "seed")
                                if getattr(args, k) is not None}}
    optim = {**recipe.optim, **({"lr": args.lr} if args.lr is not None else {})}
    if args.dry_run:
        train |= {"epochs": 1, "max_batches": 3}
    train["progress"] = not args.no_progress
    bptt = args.bptt or recipe.bptt
    cell = model.get("cell", "lstm")
    name = args.name or args.recipe or f"char-{cell}"
    description = recipe.description or f"char-level {cell.upper()} language model"
    return name, dataclasses.replace(recipe, model=model, bptt=bptt, description=description), model, \
        TrainConfig(**train), OptimConfig(**optim)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name, recipe, model_opts, train_cfg, optim_cfg = resolve(args)
    out = args.out or (args.runs / "dry-run" / "models" if args.dry_run else Path("models"))
    dist = distributed.setup(distributed.resolve_device(args.device))
    device = distributed.resolve_device(args.device, dist.local_rank)
    torch.manual_seed(train_cfg.seed)

    data = task.prepare(args.corpus, unit="char", title_line=args.title_line, end_marker=args.end_marker,
                        limit_chars=DRY_RUN_CHARS if args.dry_run else 0)
    streams = {split: data.stream(split) for split in data.sequences}
    model_cfg = RNNLMConfig(**{**model_opts, "vocab_size": len(data.vocab)})
    model = model_cfg.build().to(device)
    train = StreamBatches(streams["train"], train_cfg.batch_size, recipe.bptt, shuffle_offset=True, seed=train_cfg.seed)
    val = StreamBatches(streams["validation"], 16, 256)
    run_dir = args.runs / "dry-run" / name if args.dry_run else args.runs / name
    config = {"arch": "rnnlm", "model_config": dataclasses.asdict(model_cfg),
              "train_config": {**dataclasses.asdict(train_cfg), "bptt": recipe.bptt},
              "optim_config": dataclasses.asdict(optim_cfg)}
    result = fit(model, TBPTTObjective(), train, val, train_cfg, optim_cfg, device=device, dist=dist,
                 checkpoint_dir=run_dir, resume=args.resume, extra_state={"config": config})
    if dist.is_main:
        model = model.cpu().eval()
        save_json(result.history, run_dir / "history.json")
        plot_curves(result.history, run_dir / "curves.png", name)
        publish(args, name, recipe, model, config, result, data, streams, out, dist)
    distributed.teardown(dist)
    return 0


def figures(onnx_path: Path, streams: dict) -> list[dict]:
    """Validation and test figures of the graph itself, each split scored as one stream."""
    sess = session(onnx_path)
    return [task.metrics(split, len(streams[split]) - 1, rnn_export.stream_nll(sess, streams[split]))
            for split in ("validation", "test")]


def publish(args, name, recipe, model, config, result, data, streams, out: Path, dist) -> None:
    version = args.version or next_version(out, name)
    model_dir = out / name / str(version)
    opset = rnn_export.export(model, model_dir / "model.onnx")
    parity = rnn_export.check_parity(model, model_dir / "model.onnx", streams["test"])
    metrics = figures(model_dir / "model.onnx", streams)
    test = metrics[-1]
    print(f"{name}: test {test['cross_entropy']:.4f} nats/char, {test['bits_per_token']:.4f} bits/char, "
          f"perplexity {test['perplexity']:.3f}", flush=True)
    cfg = model.cfg
    L, H, V = cfg.layers, cfg.hidden_size, len(data.vocab)
    states = cfg.state_names
    vocab_file = data.vocab.save(model_dir / "vocab.json")
    fields = {
        "name": name, "version": version, "task": "language-model", "family": cfg.family,
        "description": recipe.description,
        "inputs": [{"name": "tokens", "datatype": "INT64", "shape": [-1, -1]},
                   *({"name": f"{s}0", "datatype": "FP32", "shape": [L, -1, H]} for s in states)],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, -1, V]},
                    *({"name": f"{s}n", "datatype": "FP32", "shape": [L, -1, H]} for s in states)],
        "preprocess": task.text_preprocess(data.vocab),
        "batching": {"max_batch_size": 32, "max_delay_ms": 1.0},
        "metrics": metrics,
        "dataset": data.dataset,
        "parity": {**dataclasses.asdict(parity), "opset": opset},
        "training": training_section(config, result, model, world_size=dist.world_size, device=args.device),
        "extra_files": [file_digest(vocab_file)],
    }
    write_card(model_dir, fields)
    lm_steps.add_steps(model_dir)  # steps.onnx: several tokens per call for the server's generation
    print(f"wrote {model_dir} (parity max |diff| {parity.max_abs_diff:.2e})", flush=True)
    if args.int8:
        publish_int8(name, fields, model_dir, streams, out, version, test["cross_entropy"], args.emulate)


def publish_int8(name, fields, model_dir: Path, streams, out: Path, version: int, float_ce: float,
                 emulate: list[str] = ()) -> None:
    """Dynamic INT8 (weights int8, activations quantized per call): the usual choice for recurrent nets,
    whose activations have no fixed range to calibrate. `emulate`: CPU levels to measure the test split on too."""
    qdir = out / f"{name}-int8" / str(version)
    quantize_dynamic_int8(model_dir / "model.onnx", qdir / "model.onnx")
    metrics = figures(qdir / "model.onnx", streams)
    sess_q, sess_f = session(qdir / "model.onnx"), session(model_dir / "model.onnx")
    probe = streams["test"][None, :512]
    lq, _ = rnn_export.run_steps(sess_q, probe, rnn_export.zero_state(sess_q, 1), 512)
    lf, _ = rnn_export.run_steps(sess_f, probe, rnn_export.zero_state(sess_f, 1), 512)
    change = metrics[-1]["cross_entropy"] - float_ce
    test = streams["test"]
    checks = isa_check.checks(qdir, {"stream": test}, lambda logits: task.metrics(
        "test", len(test) - 1, onnx_eval.logits_nll(logits, test)), list(emulate))
    write_quantized_card(fields, model_dir, qdir, style="dynamic", method=DYNAMIC_METHOD, calibration_examples=0,
                         metrics=metrics, quantized=lq, reference=lf, inputs=probe.size,
                         change={"cross_entropy_change": change}, isa_checks=checks)
    lm_steps.add_steps(qdir)
    print(f"wrote {qdir}: test {metrics[-1]['cross_entropy']:.4f} nats/char ({change:+.4f})", flush=True)

if __name__ == "__main__":
    sys.exit(main())
