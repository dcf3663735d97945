"""The training engine: optimisers, schedules, max-norm, the fit loop (early stopping, clipping, best
weights, exact resume), batching and augmentation, and history/plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from training.data.batches import TensorBatches
from training.data.images import Normalisation, RandomCropFlip
from training.engine import checkpoint
from training.engine.history import confusion_matrix, plot_confusion, plot_curves, save_json
from training.engine.optim import OPTIMIZERS, SCHEDULES, OptimConfig, Schedule, apply_max_norm, make_optimizer
from training.engine.trainer import TrainConfig, evaluate, fit
from training.tasks import image_classification as task
from training.zoo.lenet import LeNetConfig

CPU = torch.device("cpu")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


def params_vector(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def quiet(**kw) -> TrainConfig:
    return TrainConfig(progress=False, **kw)


@pytest.fixture
def make_batches(make_image_tensors):
    """Factory: (train, val) TensorBatches of class-dependent images; `wrong_val` relabels val so that
    learning the training labels makes validation loss worse every epoch."""

    def make(n_train: int = 64, n_val: int = 32, *, batch_size: int = 16, wrong_val: bool = False,
             transform=None, seed: int = 0):
        x, y = make_image_tensors(n_train, seed=seed)
        vx, vy = make_image_tensors(n_val, seed=seed + 1)
        if wrong_val:
            vx, vy = x[:n_val], (y[:n_val] + 1) % 10
        train = TensorBatches(x, y, batch_size, shuffle=True, seed=seed, transform=transform, distributed=False)
        val = TensorBatches(vx, vy, 64, distributed=False)
        return train, val

    return make


# ---------------------------------------------------------------- optimisers and schedules

EXPECTED_OPTIMIZERS = {
    "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW, "adadelta": torch.optim.Adadelta, "adamax": torch.optim.Adamax,
}


def test_optimizer_names():
    assert set(OPTIMIZERS) == set(EXPECTED_OPTIMIZERS)
    assert SCHEDULES == ("none", "step", "cosine", "onecycle")


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_make_optimizer(name):
    model = linear_model()
    cfg = OptimConfig(name=name, lr=0.01, weight_decay=1e-4, momentum=0.8, nesterov=name == "sgd")
    opt = make_optimizer(model.parameters(), cfg)
    assert type(opt) is EXPECTED_OPTIMIZERS[name]
    group = opt.param_groups[0]
    assert group["lr"] == 0.01 and group["weight_decay"] == 1e-4
    if name in ("sgd", "rmsprop"):
        assert group["momentum"] == 0.8
    if name == "sgd":
        assert group["nesterov"] is True
    before = params_vector(model)
    model(torch.randn(4, 1, 28, 28)).square().mean().backward()
    opt.step()
    assert not torch.equal(params_vector(model), before)


def test_make_optimizer_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        make_optimizer(linear_model().parameters(), OptimConfig(name="lamb"))


def lr_trace(cfg: OptimConfig, epochs: int, steps: int) -> tuple[list[float], bool]:
    """The learning rate in force for each batch, driving the Schedule as fit() does."""
    model = linear_model()
    opt = make_optimizer(model.parameters(), cfg)
    sched = Schedule(opt, cfg, epochs, steps)
    lrs = []
    for _ in range(epochs):
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.after_batch()
        sched.after_epoch()
    return lrs, sched.per_batch


def test_schedule_none_is_constant():
    lrs, per_batch = lr_trace(OptimConfig(lr=0.1, schedule="none"), epochs=3, steps=4)
    assert not per_batch
    assert lrs == [0.1] * 12


def test_schedule_step_decays_per_epoch():
    lrs, per_batch = lr_trace(OptimConfig(lr=0.1, schedule="step", step_size=2, gamma=0.5), epochs=5, steps=3)
    assert not per_batch
    per_epoch = [lrs[i * 3:(i + 1) * 3] for i in range(5)]
    assert all(len(set(e)) == 1 for e in per_epoch)  # constant within an epoch
    assert [e[0] for e in per_epoch] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_schedule_cosine_anneals_per_epoch():
    epochs = 4
    lrs, per_batch = lr_trace(OptimConfig(lr=0.1, schedule="cosine"), epochs=epochs, steps=2)
    assert not per_batch
    expected = [0.1 * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]
    assert lrs[::2] == pytest.approx(expected)
    assert lrs[1::2] == lrs[::2]


def test_schedule_onecycle_steps_per_batch():
    cfg = OptimConfig(lr=0.1, schedule="onecycle", pct_start=0.25)
    epochs, steps = 2, 10
    lrs, per_batch = lr_trace(cfg, epochs, steps)
    assert per_batch
    assert lrs[0] == pytest.approx(0.1 / 25)  # OneCycleLR's default div_factor
    assert len(set(lrs[:steps])) == steps  # changes at every batch, not only per epoch
    peak = int(np.argmax(lrs))
    assert lrs[peak] == pytest.approx(0.1)
    assert peak == round(cfg.pct_start * epochs * steps) - 1  # warm-up then anneal
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a > b for a, b in zip(lrs[peak:-1], lrs[peak + 1:]))
    assert lrs[-1] < 0.1 / 25


def test_schedule_epoch_steppers_ignore_batches_and_onecycle_ignores_epochs():
    for name, per_batch in (("step", False), ("cosine", False), ("onecycle", True)):
        cfg = OptimConfig(lr=0.1, schedule=name, step_size=1)
        opt = make_optimizer(linear_model().parameters(), cfg)
        sched = Schedule(opt, cfg, epochs=3, steps_per_epoch=5)
        lr0 = opt.param_groups[0]["lr"]
        opt.step()
        (sched.after_epoch if per_batch else sched.after_batch)()
        assert opt.param_groups[0]["lr"] == lr0, name
        (sched.after_batch if per_batch else sched.after_epoch)()
        assert opt.param_groups[0]["lr"] != lr0, name


def test_schedule_rejects_unknown_name():
    cfg = OptimConfig(schedule="exponential")
    with pytest.raises(ValueError, match="unknown schedule 'exponential'"):
        Schedule(make_optimizer(linear_model().parameters(), cfg), cfg, 1, 1)


def test_schedule_state_round_trip():
    cfg = OptimConfig(lr=0.1, schedule="onecycle")
    opt = make_optimizer(linear_model().parameters(), cfg)
    sched = Schedule(opt, cfg, 2, 5)
    for _ in range(3):
        opt.step()
        sched.after_batch()
    opt2 = make_optimizer(linear_model().parameters(), cfg)
    sched2 = Schedule(opt2, cfg, 2, 5)
    sched2.load_state_dict(sched.state_dict())
    for o, s_ in ((opt, sched), (opt2, sched2)):
        o.step()
        s_.after_batch()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


# ---------------------------------------------------------------- max-norm

def unit_norms(w: torch.Tensor) -> torch.Tensor:
    return w.flatten(1).norm(dim=1)


def test_apply_max_norm_clamps_only_large_units():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, groups=2), nn.Flatten(), nn.Linear(5, 4))
    with torch.no_grad():
        model[0].weight.mul_(torch.tensor([0.01, 100, 0.01, 100, 100, 0.01]).view(6, 1, 1, 1))
        model[2].weight.copy_(torch.tensor([[3.0, 4, 0, 0, 0],  # norm 5
                                            [0.1, 0, 0, 0, 0],
                                            [0, 0, 0, 0, 2.0],  # exactly c: unchanged
                                            [10, 10, 10, 10, 10]]))
    conv_before, lin_before = model[0].weight.clone(), model[2].weight.clone()
    bias_before = model[2].bias.clone()
    apply_max_norm(model, 2.0)
    for before, after in ((conv_before, model[0].weight.detach()), (lin_before, model[2].weight.detach())):
        nb, na = unit_norms(before), unit_norms(after)
        assert torch.all(na <= 2.0 + 1e-5)
        small = nb <= 2.0
        assert small.any() and (~small).any()
        assert torch.equal(after[small], before[small])  # left exactly as they were
        torch.testing.assert_close(na[~small], torch.full_like(na[~small], 2.0), rtol=1e-5, atol=0)
        # clamping rescales a unit: same direction
        cos = torch.nn.functional.cosine_similarity(after[~small].flatten(1), before[~small].flatten(1))
        torch.testing.assert_close(cos, torch.ones_like(cos))
    assert torch.equal(model[2].bias, bias_before)
    assert model[2].weight[0].tolist() == pytest.approx([1.2, 1.6, 0, 0, 0], rel=1e-5)
    assert model[2].weight[2].tolist() == [0, 0, 0, 0, 2.0]


# ---------------------------------------------------------------- the fit loop

def test_fit_learns_separable_problem(make_batches):
    train, val = make_batches(64, 32)
    model = linear_model()
    before = evaluate(model, task.objective, val, CPU)
    result = fit(model, task.objective, train, val, quiet(epochs=4), OptimConfig(name="adam", lr=0.01), device=CPU)
    after = evaluate(model, task.objective, val, CPU)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert result.epochs_run == 4 and not result.stopped_early
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert after["loss"] < before["loss"] / 2
    assert after["correct"] >= 0.9  # evaluate() reports correct/count; fit() renames it accuracy
    expected_keys = {"epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "wall_time_s"}
    assert set(result.history[0]) == expected_keys
    assert result.wall_time_s > 0


def test_fit_returns_best_weights_and_stops_early(make_batches):
    # Validation labels are shifted by one class: the better the model fits the training labels, the
    # worse the validation loss, so epoch 1 is the best one.
    train, val = make_batches(64, 32, wrong_val=True)
    model = linear_model()
    snapshots = {}

    def on_epoch(row):
        snapshots[row["epoch"]] = {k: v.clone() for k, v in model.state_dict().items()}

    result = fit(model, task.objective, train, val, quiet(epochs=10, patience=2),
                 OptimConfig(name="adam", lr=0.01), device=CPU, on_epoch=on_epoch)
    losses = [row["val_loss"] for row in result.history]
    assert losses == sorted(losses)  # got worse every epoch
    assert result.best_epoch == 1
    assert result.stopped_early and result.epochs_run == 3 and len(result.history) == 3
    assert sorted(snapshots) == [1, 2, 3]
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[1][k]), k
    assert not torch.equal(model.state_dict()["1.weight"], snapshots[3]["1.weight"])


@pytest.mark.parametrize("monitor", ["val_loss", "train_loss", "train_accuracy"])
def test_fit_best_epoch_follows_monitor(make_batches, monitor):
    # Wrong validation labels: val_loss is best at epoch 1 while the training figures keep improving.
    train, val = make_batches(64, 32, wrong_val=True)
    model = linear_model()
    snapshots = {}
    result = fit(model, task.objective, train, val, quiet(epochs=4, monitor=monitor),
                 OptimConfig(name="adam", lr=0.01), device=CPU,
                 on_epoch=lambda row: snapshots.update({row["epoch"]: model[1].weight.detach().clone()}))
    values = np.array([row[monitor] for row in result.history])
    sign = -1 if monitor.endswith("loss") else 1  # losses are minimised, anything else maximised
    assert result.best_epoch == 1 + int(np.argmax(sign * values))  # the first epoch with the best value
    if monitor == "val_loss":
        assert result.best_epoch == 1
    else:
        assert result.best_epoch > 1
    assert torch.equal(model[1].weight, snapshots[result.best_epoch])


def test_fit_rejects_unknown_monitor(make_batches):
    train, val = make_batches(16, 16)
    with pytest.raises(KeyError, match=r"monitor 'val_f1' is not in the history; it has \['epoch', 'lr'"):
        fit(linear_model(), task.objective, train, val, quiet(epochs=1, monitor="val_f1"), OptimConfig(), device=CPU)


def test_fit_without_patience_runs_every_epoch(make_batches):
    train, val = make_batches(32, 16, wrong_val=True)
    result = fit(linear_model(), task.objective, train, val, quiet(epochs=4), OptimConfig(lr=0.01), device=CPU)
    assert result.epochs_run == 4 and not result.stopped_early and result.best_epoch == 1


@pytest.mark.parametrize("clip", [0.0, 0.01])
def test_fit_clips_gradient_norm(make_batches, clip):
    train, val = make_batches(16, 16, batch_size=16)
    model = linear_model()
    with torch.no_grad():
        model[1].weight.mul_(50)  # large logits: a large gradient
    before = params_vector(model)
    fit(model, task.objective, train, val, quiet(epochs=1, clip_grad=clip),
        OptimConfig(name="sgd", lr=1.0, momentum=0.0), device=CPU)
    step = float((params_vector(model) - before).norm())  # one SGD step of lr 1: the (clipped) gradient
    if clip:
        assert step == pytest.approx(clip, rel=1e-3)
    else:
        assert step > 100 * 0.01


def test_fit_applies_max_norm(make_batches):
    train, val = make_batches(32, 16)
    model = linear_model()
    fit(model, task.objective, train, val, quiet(epochs=1, max_norm=0.05), OptimConfig(lr=0.05), device=CPU)
    assert unit_norms(model[1].weight).max() <= 0.05 + 1e-6


def test_fit_max_batches_limits_each_epoch(make_batches):
    train, val = make_batches(64, 16, batch_size=8)
    seen = []

    def counting(model, batch):
        seen.append(len(batch[1]))
        return task.objective(model, batch)

    fit(linear_model(), counting, train, val, quiet(epochs=2, max_batches=3), OptimConfig(), device=CPU)
    # 2 epochs x 3 training batches of 8, plus one validation batch of 16 after each epoch.
    assert seen == [8, 8, 8, 16, 8, 8, 8, 16]


def tiny_lenet(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return LeNetConfig(dropout=0.3).build()


def run_lenet(train, val, run_dir, *, seed: int, resume: bool = False, stop_after: int = 0):
    cfg = quiet(epochs=2, batch_size=16)
    optim = OptimConfig(name="adamw", lr=3e-3, weight_decay=1e-3, schedule="onecycle")
    model = tiny_lenet(seed)

    class Interrupted(Exception):
        pass

    def on_epoch(row):
        if row["epoch"] == stop_after:
            raise Interrupted

    try:
        result = fit(model, task.objective, train, val, cfg, optim, device=CPU, checkpoint_dir=run_dir,
                     resume=resume, extra_state={"config": {"arch": "lenet", "widths": (1, 2)}}, on_epoch=on_epoch)
    except Interrupted:
        return model, None
    return model, result


def without_times(history):
    return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in history]


def test_resume_reproduces_uninterrupted_run(make_batches, tmp_path):
    augment = RandomCropFlip(pad=2, flip=True)
    train, val = make_batches(48, 16, batch_size=16, transform=augment)

    full_model, full = run_lenet(train, val, tmp_path / "full", seed=0)

    _, interrupted = run_lenet(train, val, tmp_path / "split", seed=0, stop_after=1)
    assert interrupted is None
    assert len(checkpoint.load(tmp_path / "split" / "last.pt")["history"]) == 1
    torch.manual_seed(999)  # a different global RNG state: resume must restore it
    resumed_model, resumed = run_lenet(train, val, tmp_path / "split", seed=123, resume=True)

    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert without_times(resumed.history) == without_times(full.history)
    assert resumed.best_epoch == full.best_epoch and resumed.epochs_run == full.epochs_run == 2
    for (k, a), b in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), k
    last_full = checkpoint.load(tmp_path / "full" / "last.pt")
    last_split = checkpoint.load(tmp_path / "split" / "last.pt")
    for k, v in last_full["model"].items():
        assert torch.equal(v, last_split["model"][k]), k
    assert last_split["config"] == {"arch": "lenet", "widths": (1, 2)}
    assert last_split["epoch"] == 2


def test_resume_without_checkpoint_starts_fresh(make_batches, tmp_path):
    train, val = make_batches(48, 16, batch_size=16)
    _, result = run_lenet(train, val, tmp_path / "new", seed=0, resume=True)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert (tmp_path / "new" / "last.pt").is_file()


def test_checkpoint_round_trip_is_plain_data(tmp_path):
    path = tmp_path / "deep" / "ck.pt"
    state = {"w": torch.arange(3.0), "history": [{"epoch": 1, "val_loss": 0.5}], "cfg": {"widths": (1, 2)}}
    checkpoint.save(path, **state, rng=checkpoint.rng_state())
    loaded = checkpoint.load(path)  # weights_only=True: no code is unpickled
    assert torch.equal(loaded["w"], state["w"]) and loaded["history"] == state["history"]
    assert loaded["cfg"] == {"widths": (1, 2)}
    assert not list(path.parent.glob("*.tmp"))
    first = torch.rand(3)
    checkpoint.set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), first)


# ---------------------------------------------------------------- images and batches

def test_normalisation_fit_and_apply():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    norm = Normalisation.fit(images)
    assert norm.mean[0] == pytest.approx(images.mean() / 255)
    assert norm.std[0] == pytest.approx(images.std() / 255)
    x = norm.apply(images)
    assert x.shape == (20, 1, 28, 28) and x.dtype == torch.float32
    assert float(x.mean()) == pytest.approx(0, abs=1e-5) and float(x.std()) == pytest.approx(1, abs=1e-3)


def test_normalisation_per_channel():
    images = np.zeros((2, 3, 4, 4), dtype=np.uint8)
    images[:, 1] = 255
    images[0, 2], images[1, 2] = 0, 102
    norm = Normalisation.fit(images)
    assert norm.mean == pytest.approx((0.0, 1.0, 0.2))
    assert norm.std == pytest.approx((0.0, 0.0, 0.2))


def test_random_crop_flip_keeps_shape():
    x = torch.randn(5, 2, 28, 28)
    assert RandomCropFlip(pad=3)(x, torch.Generator().manual_seed(0)).shape == x.shape


def test_random_crop_flip_is_deterministic_per_generator():
    x = torch.randn(16, 1, 28, 28)
    aug = RandomCropFlip(pad=2, flip=True)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_random_crop_flip_identity_when_disabled():
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(RandomCropFlip(pad=0, flip=False)(x, torch.Generator().manual_seed(0)), x)


def test_random_crop_is_a_shifted_window_with_fill():
    p, fill = 2, -7.0
    x = torch.randn(32, 2, 6, 6)
    out = RandomCropFlip(pad=p, flip=False, fill=fill)(x, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (p, p, p, p), value=fill)
    shifts = set()
    for i in range(len(x)):
        windows = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                   if torch.equal(out[i], padded[i, :, dy:dy + 6, dx:dx + 6])]
        assert windows, f"sample {i} is not a crop of its padded image"
        shifts.add(windows[0])
    assert len(shifts) > 5  # the crops really move


def test_random_flip_mirrors_some_samples():
    x = torch.randn(64, 1, 5, 5)
    out = RandomCropFlip(pad=0, flip=True)(x, torch.Generator().manual_seed(2))
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def ids_per_epoch(batches: TensorBatches) -> list[list[int]]:
    return [yb.tolist() for _, yb in batches]


def test_batches_cover_every_index_once():
    n, bs = 23, 5
    batches = TensorBatches(torch.arange(n).float().view(n, 1), torch.arange(n), bs, shuffle=True, seed=3,
                            distributed=False)
    got = ids_per_epoch(batches)
    assert len(batches) == len(got) == math.ceil(n / bs)
    assert [len(b) for b in got] == [5, 5, 5, 5, 3]
    assert sorted(sum(got, [])) == list(range(n))
    for xb, yb in batches:
        assert torch.equal(xb.view(-1).long(), yb)  # rows of x and y stay paired


def test_batches_reshuffle_with_set_epoch():
    n = 40
    batches = TensorBatches(torch.zeros(n, 1), torch.arange(n), 8, shuffle=True, seed=0, distributed=False)
    epoch0, again = ids_per_epoch(batches), ids_per_epoch(batches)
    batches.set_epoch(1)
    epoch1 = ids_per_epoch(batches)
    assert epoch0 == again  # the order is a function of (seed, epoch)
    assert epoch1 != epoch0
    assert sorted(sum(epoch1, [])) == list(range(n))
    other_seed = TensorBatches(torch.zeros(n, 1), torch.arange(n), 8, shuffle=True, seed=1, distributed=False)
    assert ids_per_epoch(other_seed) != epoch0


def test_batches_sequential_without_shuffle():
    batches = TensorBatches(torch.zeros(7, 1), torch.arange(7), 3, distributed=False)
    assert ids_per_epoch(batches) == [[0, 1, 2], [3, 4, 5], [6]]


def test_batches_apply_transform_with_epoch_generator():
    seen = []

    def transform(xb, gen):
        seen.append(torch.randint(0, 10**9, (1,), generator=gen).item())
        return xb + 1

    batches = TensorBatches(torch.zeros(4, 1), torch.arange(4), 2, transform=transform, distributed=False)
    assert all(torch.equal(xb, torch.ones(2, 1)) for xb, _ in batches)
    first = list(seen)
    seen.clear()
    list(batches)
    assert seen == first and len(set(first)) == 2  # reproducible, and a fresh draw for each batch
    seen.clear()
    batches.set_epoch(1)
    list(batches)
    assert seen != first


def test_batches_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="x has 3 rows but y has 2"):
        TensorBatches(torch.zeros(3, 1), torch.zeros(2), 2)


# ---------------------------------------------------------------- history and plots

def test_confusion_matrix_counts():
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 2])
    cm = confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert cm.dtype == np.int64 and cm.sum() == 6


def test_confusion_matrix_repeated_pairs_accumulate():
    cm = confusion_matrix(np.array([3, 3, 3]), np.array([1, 1, 1]), 4)
    assert cm[3, 1] == 3 and cm.sum() == 3


def test_save_json(tmp_path):
    path = tmp_path / "sub" / "history.json"
    save_json([{"epoch": 1, "val_loss": 0.25}], path)
    assert path.read_text().endswith("\n")
    assert json.loads(path.read_text()) == [{"epoch": 1, "val_loss": 0.25}]


def test_plots_write_png(tmp_path):
    history = [{"epoch": e, "lr": 0.1, "train_loss": 1 / e, "val_loss": 1.1 / e, "train_accuracy": 0.5 + e / 10,
                "val_accuracy": 0.4 + e / 10} for e in (1, 2, 3)]
    plot_curves(history, tmp_path / "curves.png", "test run")
    cm = confusion_matrix(np.arange(10) % 3, np.arange(10) % 2, 3)
    plot_confusion(cm, ["a", "b", "c"], tmp_path / "confusion.png", "confusion")
    for name in ("curves.png", "confusion.png"):
        blob = (tmp_path / name).read_bytes()
        assert blob.startswith(PNG_MAGIC) and len(blob) > 1000


def test_resume_refuses_a_different_monitor(make_batches, tmp_path):
    train, val = make_batches(48, 16, batch_size=16)
    run_lenet(train, val, tmp_path / "run", seed=0, stop_after=1)
    optim = OptimConfig(name="adamw", lr=3e-3)
    with pytest.raises(ValueError, match="resume with the same --monitor"):
        fit(tiny_lenet(0), task.objective, train, val, quiet(epochs=2, monitor="val_accuracy"), optim,
            device=CPU, checkpoint_dir=tmp_path / "run", resume=True)


def test_onecycle_with_exactly_one_warmup_step_is_a_clear_error():
    opt = torch.optim.SGD(linear_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="exactly one warm-up step"):
        Schedule(opt, OptimConfig(lr=0.1, schedule="onecycle", pct_start=0.25), epochs=4, steps_per_epoch=1)
