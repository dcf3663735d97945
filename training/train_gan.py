"""Train the class-conditional DCGAN on Fashion-MNIST, export its generator to ONNX with a parity check, and
write its card.

    zooserve train-gan fashion-dcgan            # reproduce the shipped model
    zooserve train-gan fashion-dcgan --dry-run  # a few batches, writes under runs/dry-run/

The GAN objective is the value function V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))], which D maximises
and G minimises. Each iteration takes one discriminator step (ascend V: binary cross-entropy with real -> 1,
generated -> 0) and then one generator step. The generator step minimises the non-saturating -E_z[log D(G(z))]
instead of E_z[log(1 - D(G(z)))]: same fixed point, but strong gradients while D still rejects G's images
(Goodfellow et al., 2014). The history logs V's estimate on each epoch's batches (`train_value`).

This loop is not `training.engine.trainer.fit`: a GAN has two optimisers stepping in turn on two losses, which
fit's one-objective, one-optimiser loop cannot express. It shares the engine's optimisers, checkpoints (with
resume) and history/curves. Each epoch ends with a quick judge: 2,000 eval-mode samples classified by the
shipped fashion-resnet (class shares, mean top-1 probability); the generator kept is that of the epoch with
the highest mean top-1 probability whose class shares all lie within [5%, 20%] (the last epoch if none does).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training.engine import checkpoint
from training.engine.history import plot_curves, save_json
from training.engine.optim import make_optimizer
from training.engine.trainer import TrainConfig
from training.image_quality import SHARE_RANGE, FeatureModel
from training.recipes import GEN_RECIPES
from training.tasks import image_generation as task
from training.zoo.generative import DCGANConfig, init_dcgan
from zooserve.card import ImagePostprocess, Latent
from zooserve.latent import draw

RECIPES = {k: v for k, v in GEN_RECIPES.items() if v.kind == "dcgan"}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    task.add_run_arguments(p, RECIPES)
    p.add_argument("--judge-samples", type=int, default=2000, help="samples judged after each epoch")
    p.add_argument("--card-samples", type=int, default=10000, help="samples (seed 0) whose figures go in the card")
    return p.parse_args(argv)


def latent_of(cfg: DCGANConfig) -> Latent:
    return Latent(input="z", dim=cfg.dim, prior="normal", condition="label")


POSTPROCESS = ImagePostprocess(output="image", height=28, width=28, channels=1, range=[-1.0, 1.0])


def train_epoch(G, D, opt_g, opt_d, batches, cfg: TrainConfig, dim: int, classes: int, bar_desc: str) -> dict:
    """One pass: per batch, one discriminator step then one generator step. Returns the epoch's means."""
    G.train()
    D.train()
    sums = {"loss_d": 0.0, "loss_g": 0.0, "d_real": 0.0, "d_fake": 0.0}
    n = 0
    steps = min(cfg.max_batches or len(batches), len(batches))
    for i, (x, y) in enumerate(tqdm(batches, total=steps, desc=bar_desc, disable=not cfg.progress, leave=False,
                                    mininterval=2.0)):
        if i == steps:
            break
        x = x * 2.0 - 1.0  # (B,1,28,28) [0,1] -> [-1,1], the generator's tanh range
        b = len(x)
        fake_y = torch.randint(0, classes, (b,))
        fake = G(torch.randn(b, dim), fake_y)  # (B,1,28,28)
        # Discriminator: maximise V = log D(x) + log(1 - D(G(z))), i.e. minimise BCE(real -> 1, fake -> 0).
        real_logit, fake_logit = D(x, y), D(fake.detach(), fake_y)
        loss_d = (F.binary_cross_entropy_with_logits(real_logit, torch.ones(b))
                  + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros(b)))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # Generator, non-saturating: minimise -log D(G(z)).
        loss_g = F.binary_cross_entropy_with_logits(D(fake, fake_y), torch.ones(b))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        n += b
        for k, v in (("loss_d", loss_d), ("loss_g", loss_g), ("d_real", torch.sigmoid(real_logit).mean()),
                     ("d_fake", torch.sigmoid(fake_logit).mean())):
            sums[k] += float(v.detach()) * b
    means = {f"train_{k}": v / max(n, 1) for k, v in sums.items()}
    means["train_value"] = -means["train_loss_d"]  # V(D, G) on this epoch's batches, before each D step
    return means


@torch.no_grad()
def generate(G, latent: Latent, n: int, seed: int, classes: int) -> np.ndarray:
    """Images (n, 1, 28, 28) in [-1, 1] from the seed's codes and classes (zooserve.latent.draw), in G's mode."""
    inputs = draw(latent, n, seed, labels=classes)
    return torch.cat([G(torch.from_numpy(inputs["z"][i:i + 500]), torch.from_numpy(inputs["label"][i:i + 500]))
                      for i in range(0, n, 500)]).numpy()


def judge(G, latent, n, classifier: FeatureModel, *, train_mode: bool = False) -> dict:
    """Coverage of n samples (seed 0): in eval mode (BatchNorm running statistics, as exported), or in train
    mode (each batch of 500 normalised by its own statistics) on a copy, so the running statistics stay."""
    G = copy.deepcopy(G).train() if train_mode else G.eval()
    return task.coverage(generate(G, latent, n, 0, len(classifier.card.labels)), POSTPROCESS, classifier)


def within_bounds(cov: dict) -> bool:
    shares = cov["class_shares"].values()
    return min(shares) >= SHARE_RANGE[0] and max(shares) <= SHARE_RANGE[1]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name, recipe = args.recipe, RECIPES[args.recipe]
    cfg = DCGANConfig(**recipe.model)
    train_cfg, optim_cfg, out, run_dir = task.run_settings(args, recipe)
    torch.manual_seed(train_cfg.seed)
    data = task.prepare_from_args(args, seed=train_cfg.seed, batch_size=train_cfg.batch_size)
    labels, latent = data.labels, latent_of(cfg)
    judge_model = FeatureModel.open(args.classifier)
    G, D = cfg.build()
    init_dcgan(G)
    init_dcgan(D)
    opt_g, opt_d = make_optimizer(G.parameters(), optim_cfg), make_optimizer(D.parameters(), optim_cfg)
    history, best, elapsed, start = [], (-1.0, None, 0), 0.0, 1
    last = run_dir / "last.pt"
    if args.resume and last.is_file():
        ck = checkpoint.load(last)
        G.load_state_dict(ck["generator"])
        D.load_state_dict(ck["discriminator"])
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        checkpoint.set_rng_state(ck["rng"])
        history, elapsed, start = ck["history"], ck["wall_time_s"], ck["epoch"] + 1
        best = (ck["best_score"], ck["best_generator"], ck["best_epoch"])
    judge_n = min(args.judge_samples, 200) if args.dry_run else args.judge_samples
    for epoch in range(start, train_cfg.epochs + 1):
        t0 = time.monotonic()
        data.train.set_epoch(epoch)
        row = {"epoch": epoch, **train_epoch(G, D, opt_g, opt_d, data.train, train_cfg, cfg.dim, len(labels),
                                             f"epoch {epoch}/{train_cfg.epochs}")}
        elapsed += time.monotonic() - t0
        cov = judge(G, latent, judge_n, judge_model)
        shares = list(cov["class_shares"].values())
        row |= {"mean_top1": cov["mean_top1_probability"], "min_share": min(shares), "max_share": max(shares),
                "wall_time_s": round(elapsed, 1)}
        history.append(row)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        score = cov["mean_top1_probability"] if within_bounds(cov) else -1.0 + cov["mean_top1_probability"] / 10
        if best[1] is None or score > best[0]:
            best = (score, copy.deepcopy(G.state_dict()), epoch)
        checkpoint.save(last, generator=G.state_dict(), discriminator=D.state_dict(), opt_g=opt_g.state_dict(),
                        opt_d=opt_d.state_dict(), rng=checkpoint.rng_state(), history=history, wall_time_s=elapsed,
                        epoch=epoch, best_score=best[0], best_generator=best[1], best_epoch=best[2])
    G.load_state_dict(best[1])
    G.eval()
    save_json(history, run_dir / "history.json")
    plot_curves(history, run_dir / "curves.png", name, metrics=["loss_d", "loss_g", "value", "mean_top1"])
    config = {"arch": "dcgan", "model_config": dataclasses.asdict(cfg), "train_config": dataclasses.asdict(train_cfg),
              "optim_config": dataclasses.asdict(optim_cfg), "model_cfg": cfg}
    from training.export import generative as publish  # the export half, kept out of the training loop's module

    publish.publish_generator(G, name=name, version=args.version, out=out, run_dir=run_dir, recipe=recipe,
                              config=config, history=history, best_epoch=best[2], wall_time_s=elapsed, data=data,
                              latent=latent, postprocess=POSTPROCESS, classifier=args.classifier,
                              card_samples=min(args.card_samples, 200) if args.dry_run else args.card_samples,
                              judge=lambda mode: judge(G, latent, judge_n, judge_model, train_mode=mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
