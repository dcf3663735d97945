"""The training script end to end on tiny fake data: every recipe's --dry-run writes a servable model
(ONNX + valid card, plus the INT8 variant) and the run's history, plots and checkpoint."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zooserve.card import find_cards, load_card
from training import train
from training.data import fashion_mnist
from training.engine import checkpoint
from training.export.onnx_export import file_digest, opset_of, run_onnx, session
from training.recipes import RECIPES
from training.zoo import ARCHITECTURES, build_config

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST, VAL = 96, 32, 32
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fake_data(make_fake_fashion):
    return make_fake_fashion(N_TRAIN, N_TEST, seed=11)


def dry_run(data, out, runs, *extra: str) -> int:
    return train.main(["--data", str(data), "--out", str(out), "--runs", str(runs), "--dry-run", "--no-progress",
                       "--val-size", str(VAL), "--batch-size", "16", "--device", "cpu", *extra])


@pytest.fixture(scope="module", params=sorted(RECIPES))
def recipe_run(request, fake_data, tmp_path_factory):
    """Run `--recipe NAME --dry-run --int8` once per recipe; return (name, out, runs)."""
    name = request.param
    base = tmp_path_factory.mktemp(name)
    out, runs = base / "models", base / "runs"
    assert dry_run(fake_data, out, runs, "--recipe", name, "--int8") == 0
    return name, out, runs


def expected_normalisation(data) -> tuple[float, float]:
    ds = fashion_mnist.load(data)
    train_idx, _ = fashion_mnist.split_indices(N_TRAIN, VAL, seed=0)
    x = ds.train_images[train_idx].astype(np.float64) / 255
    return x.mean(), x.std()


def test_dry_run_writes_valid_float_card(recipe_run, fake_data):
    name, out, _ = recipe_run
    recipe = RECIPES[name]
    model_dir = out / name / "1"
    card = load_card(model_dir)
    assert (card.name, card.version, card.task) == (name, 1, "image-classification")
    assert card.family == ARCHITECTURES[recipe.arch].family
    assert card.description == recipe.description
    assert card.labels == fashion_mnist.LABELS
    assert [(t.name, t.shape) for t in card.inputs] == [("input", [-1, 1, 28, 28])]
    assert [(t.name, t.shape) for t in card.outputs] == [("logits", [-1, 10])]
    assert card.artifact.model_dump() == file_digest(model_dir / "model.onnx")
    assert card.dataset.official is False
    assert card.dataset.splits == {"train": N_TRAIN - VAL, "validation": VAL, "test": N_TEST}
    assert [(m.split, m.examples) for m in card.metrics] == [("validation", VAL), ("test", N_TEST)]
    assert card.parity.argmax_agreement == 1.0 and card.parity.inputs == N_TEST
    assert card.parity.reference == "torch" and card.parity.opset == opset_of(model_dir / "model.onnx")
    assert card.quantization is None
    assert card.batching.max_batch_size == recipe.max_batch_size
    t = card.training
    assert t.arch == recipe.arch and t.epochs_run == 1 and t.world_size == 1
    assert t.train_config["max_batches"] == 3 and t.train_config["batch_size"] == 16
    assert t.train_config["monitor"] == recipe.train.get("monitor", "val_loss")
    assert t.optim_config["name"] == recipe.optim["name"] and t.optim_config["lr"] == recipe.optim["lr"]
    assert t.parameters == sum(p.numel() for p in build_config(recipe.arch, recipe.model).build().parameters())
    mean, std = expected_normalisation(fake_data)
    assert card.preprocess.mean == pytest.approx([mean]) and card.preprocess.std == pytest.approx([std])


def test_dry_run_writes_int8_variant(recipe_run):
    name, out, _ = recipe_run
    qdir = out / f"{name}-int8" / "1"
    card = load_card(qdir)
    assert card.name == f"{name}-int8" and card.description.endswith("(INT8, static QDQ)")
    assert card.quantization.source_model == f"{name}/1"
    assert card.quantization.calibration_examples == N_TRAIN - VAL
    float_card = load_card(out / name / "1")
    assert card.quantization.accuracy_change == pytest.approx(card.metrics[0].accuracy - float_card.metrics[1].accuracy)
    assert [m.split for m in card.metrics] == ["test"]
    assert card.parity.reference == "onnx-fp32" and card.parity.opset == opset_of(qdir / "model.onnx")
    assert card.parity.inputs == N_TEST and 0 <= card.parity.argmax_agreement <= 1
    assert card.artifact.model_dump() == file_digest(qdir / "model.onnx")
    assert sorted(p.parent.parent.name for p in find_cards(out)) == sorted([name, f"{name}-int8"])


def test_dry_run_writes_run_files(recipe_run):
    name, _, runs = recipe_run
    run_dir = runs / "dry-run" / name
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1]
    assert {"train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr"} <= set(history[0])
    for png in ("curves.png", "confusion.png"):
        assert (run_dir / png).read_bytes().startswith(PNG_MAGIC)
    ck = checkpoint.load(run_dir / "last.pt")
    assert ck["epoch"] == 1 and ck["config"]["arch"] == RECIPES[name].arch
    assert ck["config"]["recipe"]["description"] == RECIPES[name].description


def fake_test_set(data, card):
    """The fake test images preprocessed from the card alone, as the service would do it."""
    ds = fashion_mnist.load(data)
    p = card.preprocess
    mean = np.asarray(p.mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(p.std, np.float32).reshape(1, -1, 1, 1)
    x = (ds.test_images[:, None].astype(np.float32) * np.float32(p.scale) - mean) / std
    return x.astype(np.float32), ds.test_labels


@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8"])
def test_onnx_reproduces_card_accuracy(recipe_run, fake_data, int8):
    name, out, _ = recipe_run
    model_dir = out / (f"{name}-int8" if int8 else name) / "1"
    card = load_card(model_dir)
    x, y = fake_test_set(fake_data, card)
    logits = run_onnx(session(model_dir / "model.onnx"), x)
    test = next(m for m in card.metrics if m.split == "test")
    assert logits.shape == (N_TEST, 10)
    assert float(np.mean(logits.argmax(1) == y)) == pytest.approx(test.accuracy, abs=1e-6)


def test_second_run_resumes_and_writes_next_version(fake_data, tmp_path):
    out, runs = tmp_path / "models", tmp_path / "runs"
    assert dry_run(fake_data, out, runs, "--arch", "lenet", "--name", "lenet-a") == 0
    first = json.loads((runs / "dry-run" / "lenet-a" / "history.json").read_text())
    assert dry_run(fake_data, out, runs, "--arch", "lenet", "--name", "lenet-a", "--resume") == 0
    assert [p.parent.name for p in find_cards(out)] == ["1", "2"]
    # The run had finished its one epoch: resuming trains nothing and republishes the same weights.
    assert json.loads((runs / "dry-run" / "lenet-a" / "history.json").read_text()) == first
    assert load_card(out / "lenet-a" / "2").metrics == load_card(out / "lenet-a" / "1").metrics
    assert not (out / "lenet-a-int8").exists()


def test_default_output_is_under_runs_for_dry_run(fake_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a wrong default would write to ./models
    runs = tmp_path / "runs"
    assert train.main(["--data", str(fake_data), "--runs", str(runs), "--dry-run", "--no-progress",
                       "--val-size", str(VAL), "--device", "cpu", "--name", "d"]) == 0
    assert load_card(runs / "dry-run" / "models" / "d" / "1").name == "d"
    assert not (tmp_path / "models").exists()


def args(*argv: str):
    return train.resolve(train.parse_args(list(argv)))


def test_recipe_values_reach_the_configs():
    name, recipe, train_cfg, optim_cfg = args("--recipe", "fashion-resnet")
    r = RECIPES["fashion-resnet"]
    assert name == "fashion-resnet" and recipe == r
    assert train_cfg.epochs == r.train["epochs"] and train_cfg.progress is True
    assert dataclasses.asdict(optim_cfg) | r.optim == dataclasses.asdict(optim_cfg)


def test_flags_override_the_recipe():
    name, recipe, train_cfg, optim_cfg = args(
        "--recipe", "fashion-resnet", "--lr", "0.5", "--optimizer", "adam", "--epochs", "3", "--no-augment-flip",
        "--model-opt", "widths=[8,16,32]", "--name", "mine", "--no-progress")
    assert name == "mine"
    assert optim_cfg.lr == 0.5 and optim_cfg.name == "adam" and optim_cfg.schedule == "onecycle"
    assert train_cfg.epochs == 3 and train_cfg.progress is False
    assert recipe.augment_flip is False and recipe.augment_pad == 2
    assert build_config(recipe.arch, recipe.model).widths == (8, 16, 32)


def test_other_arch_drops_the_recipes_model_options():
    name, recipe, _, _ = args("--recipe", "fashion-resnet", "--arch", "vgg")
    assert recipe.arch == "vgg" and recipe.model == {}
    assert recipe.description == "vgg on Fashion-MNIST"
    assert name == "fashion-resnet"


def test_arch_without_recipe():
    name, recipe, train_cfg, optim_cfg = args("--arch", "mobilenet", "--dry-run")
    assert name == "fashion-mobilenet" and recipe.arch == "mobilenet"
    assert train_cfg.epochs == 1 and train_cfg.max_batches == 3
    assert optim_cfg.name == "adamw"


def test_recipe_as_the_first_word_is_the_flag(capsys):
    """`zooserve train fashion-resnet` is `zooserve train --recipe fashion-resnet`; two different ones are refused."""
    assert args("fashion-resnet", "--epochs", "3") == args("--recipe", "fashion-resnet", "--epochs", "3")
    assert train.parse_args(["fashion-lenet", "--recipe", "fashion-lenet"]).recipe == "fashion-lenet"
    with pytest.raises(SystemExit) as exit_:
        train.parse_args(["fashion-lenet", "--recipe", "fashion-resnet"])
    assert exit_.value.code == 2
    assert "two recipes: fashion-lenet and --recipe fashion-resnet" in capsys.readouterr().err


def test_unknown_recipe_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        train.parse_args(["--recipe", "fashion-googlenet"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_help_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "training.train", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--recipe", "--dry-run", "--int8", "--resume", "--val-size"):
        assert flag in proc.stdout
    assert "torchrun --nproc_per_node=2" in proc.stdout  # the module docstring is the help text
