"""Publish the generative models: export their graphs with parity checks, measure the card's figures on the
exported graphs, save sample grids, and write the cards (zooserve/card.py: tasks "autoencoder" and
"image-generation", postprocess, latent, graphs).

An autoencoder's version folder holds two graphs: `model.onnx` (image -> code [, log_var], image) and
`decoder.onnx` (code -> image), listed in the card's `graphs` with role "decoder"; `latent.graph` names it.
A generator is one graph, `model.onnx` (z [, label] -> image).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from training.export.card import training_section, write_card
from training.export.graph_export import check_graph_parity, export_graph, run_graph
from training.export.onnx_eval import session
from training.export.onnx_export import ParityError, file_digest
from training.gen_report import record
from training.generated import Generated
from training.image_quality import FeatureModel, Quality, gaussian, measure
from training.tasks import image_generation as task
from zooserve.card import ImagePostprocess, Latent
from zooserve.latent import draw, to_pixels


def tensor(name: str, datatype: str, *dims: int) -> dict:
    return {"name": name, "datatype": datatype, "shape": [-1, *dims]}


def _training(config: dict, model: torch.nn.Module, epochs_run: int, best_epoch: int, wall_time_s: float) -> dict:
    run = SimpleNamespace(epochs_run=epochs_run, best_epoch=best_epoch, wall_time_s=wall_time_s)
    return training_section(config, run, model, world_size=1, device="cpu")


def _base(name, version, task_name, family, description, recipe, data, postprocess: ImagePostprocess,
          latent: Latent) -> dict:
    return {"name": name, "version": version, "task": task_name, "family": family, "description": description,
            "postprocess": postprocess.model_dump(), "latent": latent.model_dump(),
            "batching": {"max_batch_size": recipe.max_batch_size, "max_delay_ms": recipe.max_delay_ms},
            "dataset": data.dataset}


def publish_autoencoder(model, *, kind: str, name: str, version: int, out: Path, run_dir: Path, recipe, config: dict,
                        result, data, classifier: Path, samples: int) -> dict:
    """Export an Autoencoder or VAE (training.zoo.generative) as model.onnx + decoder.onnx, measure validation and
    test figures on the graphs, check decoder(code) == the main graph's image, write the card; a VAE's card also
    gets the "generated" figures of `samples` images from its prior (`record_generated`)."""
    model = model.eval().cpu()
    model_dir = out / name / str(version)
    dim = model.decoder.dense[0].in_features
    outputs = ["code", "log_var", "image"] if kind == "vae" else ["code", "image"]
    opset = export_graph(model, {"input": data.test_x[:2]}, outputs, model_dir / "model.onnx")
    parity = check_graph_parity(model, model_dir / "model.onnx", {"input": data.test_x[:1000].numpy()}, opset=opset)
    main_graph = session(model_dir / "model.onnx")  # opened once for every figure below
    codes = run_graph(main_graph, {"input": data.test_x[:1000].numpy()})
    d_opset = export_graph(model.decoder, {"code": torch.from_numpy(codes["code"][:2])}, ["image"],
                           model_dir / "decoder.onnx")
    d_parity = check_graph_parity(model.decoder, model_dir / "decoder.onnx", {"code": codes["code"]}, opset=d_opset)
    consistency = decoder_consistency(model_dir, data.test_x[:1000].numpy())
    decoder_graph = session(model_dir / "decoder.onnx")

    def decode(z):
        return run_graph(decoder_graph, {"code": z})["image"]

    metrics = []
    for split, x in (("validation", data.val.x.numpy()), ("test", data.test_x.numpy())):
        main = run_graph(main_graph, {"input": x})
        metrics.append({"split": split, **task.autoencoder_figures(main, x, decode)})
    post = ImagePostprocess(output="image", height=28, width=28, channels=1, range=[0.0, 1.0])
    latent = Latent(input="code", dim=dim, prior="normal" if kind == "vae" else None, graph="decoder")
    fields = _base(name, version, "autoencoder", type(config["model_cfg"]).family, recipe.description, recipe, data,
                   post, latent)
    fields |= {
        "inputs": [tensor("input", "FP32", 1, 28, 28)],
        "outputs": [tensor(o, "FP32", *((1, 28, 28) if o == "image" else (dim,))) for o in outputs],
        "preprocess": task.image_preprocess(), "metrics": metrics, "parity": dataclasses.asdict(parity),
        "graphs": [{"role": "decoder", "inputs": [tensor("code", "FP32", dim)],
                    "outputs": [tensor("image", "FP32", 1, 28, 28)], "parity": dataclasses.asdict(d_parity),
                    "artifact": file_digest(model_dir / "decoder.onnx")}],
        "training": _training({k: v for k, v in config.items() if k != "model_cfg"}, model, result.epochs_run,
                              result.best_epoch, result.wall_time_s),
    }
    write_card(model_dir, fields)
    if kind == "vae":
        record_generated(model_dir, classifier, samples, data)
    x = data.test_x[:50].numpy()
    recon = run_graph(main_graph, {"input": x})["image"]
    pairs = np.stack([to_pixels(x, post), to_pixels(recon, post)], 1).reshape(-1, 28, 28)  # image, its recon, ...
    task.save_grid(pairs, run_dir / "reconstructions.png")
    if kind == "vae":
        task.save_grid(to_pixels(decode(draw(latent, 100, 0)["code"]), post), run_dir / "samples.png")
    test = metrics[-1]
    print(f"wrote {model_dir}: test {json.dumps(test)}; parity {parity.max_abs_diff:.2e} / decoder "
          f"{d_parity.max_abs_diff:.2e}; decoder(code) vs image {consistency:.2e}", flush=True)
    return test


def decoder_consistency(model_dir: Path, x: np.ndarray, atol: float = 1e-4) -> float:
    """max |decoder.onnx(main code) - main image| on images x: the two graphs must decode alike."""
    main = run_graph(model_dir / "model.onnx", {"input": x})
    diff = float(np.abs(run_graph(model_dir / "decoder.onnx", {"code": main["code"]})["image"] - main["image"]).max())
    if not diff <= atol:
        raise ParityError(f"{model_dir}: decoder(code) differs from the main graph's image by {diff:.3g}")
    return diff


def record_generated(model_dir: Path, classifier: Path, samples: int, data) -> Quality:
    """Measure `samples` images from seed 0 (the /sample rule) against the test images with the classifier's
    features, as training.gen_report does, and record them in the card as the split "generated"."""
    feats = FeatureModel.open(classifier)
    test_pixels = np.rint(data.test_x.numpy()[:, 0] * 255).astype(np.uint8)  # (N, 28, 28), the raw test images
    q = measure(feats, Generated(model_dir).sample(samples, 0), gaussian(feats.run(test_pixels)[0]))
    record(model_dir, q, feats.name)
    return q


def publish_generator(G, *, name: str, version: int, out: Path, run_dir: Path, recipe, config: dict, history: list,
                      best_epoch: int, wall_time_s: float, data, latent: Latent, postprocess: ImagePostprocess,
                      classifier: Path, card_samples: int, judge) -> dict:
    """Export a conditional generator (eval mode: BatchNorm's running statistics) as model.onnx, compare its
    eval-mode samples with train-mode ones (`judge(train_mode)`), measure the card's coverage figures on
    `card_samples` images drawn from seed 0 through the graph (`record_generated`), and write the card."""
    G = G.eval().cpu()
    labels = data.labels
    model_dir = out / name / str(version)
    sample = {k: torch.from_numpy(v) for k, v in draw(latent, 2, 0, labels=len(labels)).items()}
    opset = export_graph(G, sample, ["image"], model_dir / "model.onnx")
    parity = check_graph_parity(G, model_dir / "model.onnx", draw(latent, 1000, 1, labels=len(labels)), opset=opset)
    modes = {"eval": judge(False), "train": judge(True)}
    (run_dir / "modes.json").write_text(json.dumps(modes, indent=2) + "\n")
    grid = {latent.input: draw(latent, 100, 0, classes=0)["z"], latent.condition: np.repeat(np.arange(10), 10)}
    task.save_grid(to_pixels(run_graph(model_dir / "model.onnx", grid)["image"], postprocess), run_dir / "samples.png")
    fields = _base(name, version, "image-generation", type(config["model_cfg"]).family, recipe.description, recipe,
                   data, postprocess, latent)
    fields |= {
        "inputs": [tensor(latent.input, "FP32", latent.dim), tensor(latent.condition, "INT64")],
        "outputs": [tensor("image", "FP32", 1, 28, 28)], "preprocess": None, "labels": labels,
        "metrics": [], "parity": dataclasses.asdict(parity),
        "training": _training({k: v for k, v in config.items() if k != "model_cfg"}, G, len(history), best_epoch,
                              wall_time_s),
    }
    write_card(model_dir, fields)
    q = record_generated(model_dir, classifier, card_samples, data)
    print(f"wrote {model_dir}: parity {parity.max_abs_diff:.2e}; eval vs train mode (mean top-1) "
          f"{modes['eval']['mean_top1_probability']:.4f} vs {modes['train']['mean_top1_probability']:.4f}; "
          f"card: {vars(q)}", flush=True)
    return vars(q)
