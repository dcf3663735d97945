"""Train the convolutional autoencoder or the VAE on Fashion-MNIST (pixels in [0, 1]) through the shared engine,
export the main graph and the decoder graph with parity checks, and write the card.

    zooserve train-autoencoder fashion-autoencoder   # squared error per pixel
    zooserve train-autoencoder fashion-vae           # -ELBO: Bernoulli (binary cross-entropy) + analytic KL
    zooserve train-autoencoder fashion-vae --dry-run # a few batches, writes under runs/dry-run/

The VAE's likelihood reads each grey pixel x in [0, 1] as the target of a Bernoulli with the decoder's sigmoid
as its mean, so its reconstruction term is the binary cross-entropy summed over the 784 pixels. For grey
pixels this is the usual choice rather than a normalised density (the cross-entropy's minimum is above 0
when x is not 0 or 1), so the card's nats compare with other VAEs trained this way, not with continuous
density models. The card's -ELBO takes one sample z ~ q(z|x) per image and the KL term in closed form.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from training.engine.history import plot_curves, save_json
from training.engine.trainer import fit
from training.export.generative import publish_autoencoder
from training.recipes import GEN_RECIPES
from training.tasks import image_generation as task
from training.zoo.generative import AutoencoderConfig, VAEConfig

RECIPES = {k: v for k, v in GEN_RECIPES.items() if v.kind in ("autoencoder", "vae")}
CONFIGS = {"autoencoder": AutoencoderConfig, "vae": VAEConfig}
OBJECTIVES = {"autoencoder": task.reconstruction_objective, "vae": task.vae_objective}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    task.add_run_arguments(p, RECIPES)
    p.add_argument("--dim", type=int, help="code size (default: the recipe's)")
    p.add_argument("--samples", type=int, default=10_000, help="VAE samples (seed 0) measured for the card")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name, recipe = args.recipe, RECIPES[args.recipe]
    model_cfg = CONFIGS[recipe.kind](**{**recipe.model, **({"dim": args.dim} if args.dim else {})})
    train_cfg, optim_cfg, out, run_dir = task.run_settings(args, recipe)
    torch.manual_seed(train_cfg.seed)
    data = task.prepare_from_args(args, seed=train_cfg.seed, batch_size=train_cfg.batch_size)
    model = model_cfg.build()
    config = {"arch": recipe.kind, "model_config": dataclasses.asdict(model_cfg),
              "train_config": dataclasses.asdict(train_cfg), "optim_config": dataclasses.asdict(optim_cfg)}
    result = fit(model, OBJECTIVES[recipe.kind], data.train, data.val, train_cfg, optim_cfg, device=torch.device("cpu"),
                 checkpoint_dir=run_dir, resume=args.resume, extra_state={"config": config})
    save_json(result.history, run_dir / "history.json")
    plot_curves(result.history, run_dir / "curves.png", name)
    publish_autoencoder(model, kind=recipe.kind, name=name, version=args.version, out=out, run_dir=run_dir,
                        recipe=recipe, config={**config, "model_cfg": model_cfg}, result=result, data=data,
                        classifier=args.classifier, samples=min(args.samples, 200) if args.dry_run else args.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
