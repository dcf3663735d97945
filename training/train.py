"""Train an image classifier from the zoo, export it to ONNX with a parity check, and write its card.

    zooserve train fashion-resnet                          # reproduce a shipped model (or --recipe NAME)
    zooserve train --arch vgg --epochs 5 --name my-vgg     # anything else, from flags
    torchrun --nproc_per_node=2 -m training.train --recipe fashion-lenet   # DistributedDataParallel

Outputs: `<out>/<name>/<version>/model.onnx` + `model.json` (the artifact), and under `<runs>/<name>/`
the checkpoint (`last.pt`, for `--resume`), `history.json`, `curves.png` and `confusion.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from training.engine import distributed
from training.engine.history import confusion_matrix, plot_confusion, plot_curves, save_json
from training.engine.optim import OPTIMIZERS, SCHEDULES, OptimConfig
from training.engine.trainer import TrainConfig, fit
from training.export import isa_check
from training.export.card import next_version, training_section, write_card, write_quantized_card
from training.export.onnx_export import check_parity, export, run_onnx, session
from training.export.quantize import quantize_int8
from training.recipes import RECIPES, Recipe
from training.tasks import image_classification as task
from training.zoo import ARCHITECTURES, build_config

DRY_RUN_IMAGES = 512


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe_name", nargs="?", choices=sorted(RECIPES), metavar="RECIPE",
                   help="start from this named recipe: the same as --recipe")
    p.add_argument("--recipe", choices=sorted(RECIPES), help="start from a named recipe")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), help="architecture (default: the recipe's)")
    p.add_argument("--name", help="model name in the repository (default: the recipe's name, or fashion-ARCH)")
    p.add_argument("--model-opt", action="append", default=[], metavar="KEY=JSON",
                   help="override an architecture option, e.g. widths=[16,32,64]")
    p.add_argument("--data", help="folder with the Fashion-MNIST idx files")
    p.add_argument("--out", type=Path, default=None, help="model repository to write (default: models/)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="where checkpoints, history and plots go")
    p.add_argument("--version", type=int, help="version to write (default: the next free one)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--clip-grad", type=float, help="max global gradient norm (0 disables)")
    p.add_argument("--max-norm", type=float, help="max L2 norm of each unit's incoming weights (0 disables)")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0 disables)")
    p.add_argument("--monitor", help="history key that picks the best epoch (val_loss or val_accuracy)")
    p.add_argument("--augment-pad", type=int, help="random-crop padding in pixels (0 disables)")
    p.add_argument("--augment-flip", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--val-size", type=int, default=5000, help="validation images taken from the 60k train set")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--int8", action="store_true", help="also write an INT8-quantized variant, NAME-int8")
    isa_check.add_argument(p)
    p.add_argument("--resume", action="store_true", help="continue from <runs>/<name>/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--dry-run", action="store_true",
                   help=f"one epoch of a few batches on {DRY_RUN_IMAGES} images; writes only under <runs>/dry-run/")
    args = p.parse_args(argv)
    if args.recipe and args.recipe_name and args.recipe != args.recipe_name:
        p.error(f"two recipes: {args.recipe_name} and --recipe {args.recipe}")
    args.recipe = args.recipe or args.recipe_name
    return args


def resolve(args: argparse.Namespace) -> tuple[str, Recipe, TrainConfig, OptimConfig]:
    """Merge recipe and flags into the name, recipe and the two config dataclasses."""
    base = RECIPES[args.recipe] if args.recipe else Recipe(arch=args.arch or "lenet", description="")
    arch = args.arch or base.arch
    model_overrides = dict(base.model) if arch == base.arch else {}
    for item in args.model_opt:
        key, _, value = item.partition("=")
        model_overrides[key] = json.loads(value)
    name = args.name or args.recipe or f"fashion-{arch}"
    description = base.description if arch == base.arch and base.description else f"{arch} on Fashion-MNIST"
    flags = {k: getattr(args, k) for k in ("augment_pad", "augment_flip") if getattr(args, k) is not None}
    recipe = dataclasses.replace(base, arch=arch, model=model_overrides, description=description, **flags)
    train = {**base.train, **_given(args, {f.name for f in dataclasses.fields(TrainConfig)})}
    optim = {**base.optim, **_given(args, {f.name for f in dataclasses.fields(OptimConfig)} - {"name"})}
    if args.optimizer:
        optim["name"] = args.optimizer
    if args.dry_run:
        train |= {"epochs": 1, "max_batches": 3}
    train["progress"] = not args.no_progress
    return name, recipe, TrainConfig(**train), OptimConfig(**optim)


def _given(args: argparse.Namespace, names: set[str]) -> dict:
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name, recipe, train_cfg, optim_cfg = resolve(args)
    out = args.out or (args.runs / "dry-run" / "models" if args.dry_run else Path("models"))
    device = distributed.resolve_device(args.device)
    dist = distributed.setup(device)
    device = distributed.resolve_device(args.device, dist.local_rank)
    torch.manual_seed(train_cfg.seed)

    data = task.prepare(args.data, val_size=min(args.val_size, DRY_RUN_IMAGES // 4) if args.dry_run else args.val_size,
                        seed=train_cfg.seed, batch_size=train_cfg.batch_size, augment_pad=recipe.augment_pad,
                        augment_flip=recipe.augment_flip, limit=DRY_RUN_IMAGES if args.dry_run else 0)
    model_cfg = build_config(recipe.arch, recipe.model)
    model = model_cfg.build().to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)  # oneDNN convolutions run faster in NHWC
    # A dry run never touches the real run's checkpoint, which --resume and `zooserve report` rely on.
    run_dir = args.runs / "dry-run" / name if args.dry_run else args.runs / name
    config = {"arch": recipe.arch, "model_config": dataclasses.asdict(model_cfg),
              "train_config": dataclasses.asdict(train_cfg), "optim_config": dataclasses.asdict(optim_cfg),
              "recipe": dataclasses.asdict(recipe)}
    result = fit(model, task.objective, data.train, data.val, train_cfg, optim_cfg, device=device, dist=dist,
                 checkpoint_dir=run_dir, resume=args.resume, extra_state={"config": config})

    if dist.is_main:
        model = model.to("cpu", memory_format=torch.contiguous_format).eval()
        save_json(result.history, run_dir / "history.json")
        plot_curves(result.history, run_dir / "curves.png", name)
        publish(args, name, recipe, model, model_cfg, config, result, data, out, run_dir, dist)
    distributed.teardown(dist)
    return 0


def publish(args, name, recipe, model, model_cfg, config, result, data, out: Path, run_dir: Path, dist) -> None:
    """Test-set figures, confusion matrix, ONNX export + parity, card; optionally the INT8 variant."""
    logits = task.predict(model, data.test_x)
    test = task.metrics(logits, data.test_y, "test")
    val_logits = task.predict(model, data.val.x)
    val = task.metrics(val_logits, data.val.y, "validation")
    cm = confusion_matrix(data.test_y.numpy(), logits.argmax(1).numpy(), len(data.labels))
    plot_confusion(cm, data.labels, run_dir / "confusion.png", f"{name}: test accuracy {test['accuracy']:.4f}")
    print(f"{name}: test accuracy {test['accuracy']:.4f}, cross-entropy {test['cross_entropy']:.4f}", flush=True)

    version = args.version or next_version(out, name)
    model_dir = out / name / str(version)
    sample = data.test_x[:2]
    opset = export(model, sample, model_dir / "model.onnx")
    parity = check_parity(model, model_dir / "model.onnx", data.test_x[:1000], opset=opset)
    fields = {
        "name": name, "version": version, "task": "image-classification", "family": model_cfg.family,
        "description": recipe.description,
        **task.card_io(data),
        "batching": {"max_batch_size": recipe.max_batch_size, "max_delay_ms": recipe.max_delay_ms},
        "metrics": [val, test],
        "dataset": data.dataset,
        "parity": dataclasses.asdict(parity),
        "training": training_section(config, result, model, world_size=dist.world_size, device=args.device),
    }
    write_card(model_dir, fields)
    print(f"wrote {model_dir} (parity max |diff| {parity.max_abs_diff:.2e})", flush=True)
    if args.int8:
        publish_int8(name, fields, model_dir, data, out, version, test["accuracy"], args.emulate)


def publish_int8(name, fields, model_dir: Path, data, out: Path, version: int, float_accuracy: float,
                 emulate: list[str] = ()) -> None:
    """Quantize, measure test accuracy of the INT8 graph itself (here, and on each emulated CPU level in
    `emulate`), and write `NAME-int8` with its card."""
    qdir = out / f"{name}-int8" / str(version)
    quantize_int8(model_dir / "model.onnx", qdir / "model.onnx", data.calibration_x.numpy())
    sess = session(qdir / "model.onnx")
    logits = torch.from_numpy(run_onnx(sess, data.test_x.numpy()))
    test = task.metrics(logits, data.test_y, "test")
    # Parity for a quantized graph is measured against its float source, not against torch.
    float_logits = run_onnx(session(model_dir / "model.onnx"), data.test_x[:1000].numpy())
    checks = isa_check.checks(qdir, {"x": data.test_x.numpy()}, lambda out: task.metrics(
        torch.from_numpy(out), data.test_y, "test"), list(emulate))
    write_quantized_card(fields, model_dir, qdir, style="static QDQ",
                         method="onnxruntime static QDQ (min-max calibration), per-channel int8 weights in [-64, 64] "
                                "(reduce_range), uint8 activations; the logits layer float",
                         calibration_examples=len(data.calibration_x), metrics=[test],
                         quantized=logits[:1000].numpy(), reference=float_logits, inputs=len(float_logits),
                         change={"accuracy_change": test["accuracy"] - float_accuracy}, isa_checks=checks)
    print(f"wrote {qdir}: test accuracy {test['accuracy']:.4f} ({test['accuracy'] - float_accuracy:+.4f})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
