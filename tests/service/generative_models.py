"""Tiny random-weight generative models for the serving tests, with the names, shapes and cards the trained
Fashion-MNIST ones have (issue 17), written with `onnx.helper` into a `RepoWriter`'s repository:

* `gan`: an image generator, conditional: z FP32 (N, d) + label INT64 (N,) -> image (N, 1, 28, 28) in [-1, 1]
  (z plus the label's embedding -> MatMul -> BatchNorm -> ConvTranspose -> Tanh, as a DCGAN's layers);
  preprocess null, latent {z, normal, label}.
* `ae` / `vae`: an autoencoder: input (N, 1, 28, 28) -> code (N, d) (and a VAE's log_var (N, d)) and image
  (N, 1, 28, 28) in [0, 1] (MatMul -> Sigmoid), plus decoder.onnx: code -> image with the same weights,
  listed in the card's `graphs` as role "decoder"; latent {code, prior normal (vae) or null (ae), decoder}.

`broken` breaks the decoder: "corrupt" (not ONNX, checksum right), "missing" (no file), "tampered" (checksum
wrong).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from tests.service.conftest import OPSET, RepoWriter, card_dict, onnx_model
from zooserve.card import ModelCard

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
PIXELS = 28 * 28
IMAGE = [-1, 1, 28, 28]


def _spec(name: str, shape: list[int], datatype: str = "FP32") -> dict:
    return {"name": name, "datatype": datatype, "shape": shape}


def _info(spec: dict):
    kind = TensorProto.FLOAT if spec["datatype"] == "FP32" else TensorProto.INT64
    return helper.make_tensor_value_info(spec["name"], kind, ["N" if d == -1 else d for d in spec["shape"]])


def _image_head(src: str, w: np.ndarray, squash: str) -> tuple[list, list]:
    """src (N, k) -> MatMul W (k, 784) -> squash -> image (N, 1, 28, 28)."""
    nodes = [helper.make_node("MatMul", [src, "Wd"], ["pix"]), helper.make_node(squash, ["pix"], ["flat_img"]),
             helper.make_node("Reshape", ["flat_img", "img_shape"], ["image"])]
    return nodes, [numpy_helper.from_array(w, "Wd"), numpy_helper.from_array(np.array(IMAGE, np.int64), "img_shape")]


def gan_graph(dim: int, seed: int):
    """As a DCGAN's generator, in miniature: z + the label's embedding (N, d) -> MatMul -> (N, 4, 7, 7) ->
    BatchNormalization -> Relu -> ConvTranspose (kernel 4, stride 4) -> (N, 1, 28, 28) -> Tanh."""
    rng = np.random.default_rng(seed)
    arr = lambda name, a: numpy_helper.from_array(np.asarray(a, np.float32), name)  # noqa: E731
    inits = [arr("E", rng.normal(0, 1, (len(FASHION), dim))), arr("W", rng.normal(0, 0.5, (dim, 4 * 49))),
             numpy_helper.from_array(np.array([-1, 4, 7, 7], np.int64), "fmap"),
             arr("gamma", rng.uniform(0.5, 1.5, 4)), arr("beta", rng.normal(0, 0.1, 4)),
             arr("mu", rng.normal(0, 0.1, 4)), arr("var", rng.uniform(0.5, 2, 4)),
             arr("K", rng.normal(0, 0.5, (4, 1, 4, 4)))]
    nodes = [helper.make_node("Gather", ["E", "label"], ["e"], axis=0), helper.make_node("Add", ["z", "e"], ["zc"]),
             helper.make_node("MatMul", ["zc", "W"], ["h"]), helper.make_node("Reshape", ["h", "fmap"], ["h4"]),
             helper.make_node("BatchNormalization", ["h4", "gamma", "beta", "mu", "var"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["act"]),
             helper.make_node("ConvTranspose", ["act", "K"], ["up"], kernel_shape=[4, 4], strides=[4, 4]),
             helper.make_node("Tanh", ["up"], ["image"])]
    ins, outs = [_spec("z", [-1, dim]), _spec("label", [-1], "INT64")], [_spec("image", IMAGE)]
    return onnx_model(nodes, [_info(s) for s in ins], [_info(s) for s in outs], inits), ins, outs


def autoencoder_graphs(dim: int, seed: int, variational: bool):
    """(main graph, its inputs, outputs), (decoder graph, its inputs, outputs): the same decoding weights."""
    rng = np.random.default_rng(seed)
    we = rng.normal(0, 0.05, (PIXELS, dim)).astype(np.float32)
    wd = rng.normal(0, 0.5, (dim, PIXELS)).astype(np.float32)
    head, inits = _image_head("code", wd, "Sigmoid")
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "We"], ["code"]),
             *head]
    inits.append(numpy_helper.from_array(we, "We"))
    outs = [_spec("code", [-1, dim])]
    if variational:
        nodes.append(helper.make_node("Mul", ["code", "half"], ["log_var"]))
        inits.append(numpy_helper.from_array(np.array(0.5, np.float32), "half"))
        outs.append(_spec("log_var", [-1, dim]))
    outs.append(_spec("image", IMAGE))
    ins = [_spec("input", IMAGE)]
    main = onnx_model(nodes, [_info(s) for s in ins], [_info(s) for s in outs], inits)
    dec_head, dec_inits = _image_head("code", wd, "Sigmoid")
    dec_ins, dec_outs = [_spec("code", [-1, dim])], [_spec("image", IMAGE)]
    decoder = onnx_model(dec_head, [_info(s) for s in dec_ins], [_info(s) for s in dec_outs], dec_inits)
    return (main, ins, outs), (decoder, dec_ins, dec_outs)


def _artifact(file: str, blob: bytes) -> dict:
    return {"file": file, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def add_generative(writer: RepoWriter, name: str, variant: str, version: int = 1, *, dim: int = 8,
                   max_batch_size: int = 16, max_delay_ms: float = 2.0, broken: str | None = None,
                   seed: int = 0) -> dict:
    """Write a `gan`, `ae` or `vae` version; returns its card (as written)."""
    post = {"kind": "image", "output": "image", "height": 28, "width": 28, "channels": 1, "layout": "NCHW"}
    if variant == "gan":
        model, ins, outs = gan_graph(dim, seed)
        blob = model.SerializeToString()
        card = card_dict(name, version, blob, inputs=ins, outputs=outs, max_batch_size=max_batch_size,
                         max_delay_ms=max_delay_ms)
        card |= {"task": "image-generation", "family": "gan/dcgan", "preprocess": None, "labels": FASHION,
                 "postprocess": {**post, "range": [-1.0, 1.0]},
                 "latent": {"input": "z", "dim": dim, "prior": "normal", "condition": "label", "graph": None}}
        files = {"model.onnx": blob}
    else:
        (main, ins, outs), (decoder, dec_ins, dec_outs) = autoencoder_graphs(dim, seed, variant == "vae")
        blob, dec_blob = main.SerializeToString(), decoder.SerializeToString()
        card = card_dict(name, version, blob, inputs=ins, outputs=outs, max_batch_size=max_batch_size,
                         max_delay_ms=max_delay_ms)
        card |= {"task": "autoencoder", "family": "vae/conv" if variant == "vae" else "autoencoder/conv",
                 "labels": None, "postprocess": {**post, "range": [0.0, 1.0]},
                 "preprocess": {"kind": "image", "height": 28, "width": 28, "channels": 1, "layout": "NCHW",
                                "scale": 1 / 255, "mean": [0.0], "std": [1.0]},
                 "latent": {"input": "code", "dim": dim, "prior": "normal" if variant == "vae" else None,
                            "graph": "decoder"},
                 "graphs": [{"role": "decoder", "inputs": dec_ins, "outputs": dec_outs,
                             "parity": {**card["parity"], "argmax_agreement": None},
                             "artifact": _artifact("decoder.onnx", dec_blob)}]}
        if broken == "corrupt":
            dec_blob = b"\x00not an onnx model\xff" * 8
            card["graphs"][0]["artifact"] = _artifact("decoder.onnx", dec_blob)
        elif broken == "tampered":
            dec_blob = dec_blob[:-4] + b"\x00\x00\x00\x00"
        files = {"model.onnx": blob, **({} if broken == "missing" else {"decoder.onnx": dec_blob})}
    card["parity"] = {**card["parity"], "argmax_agreement": None, "opset": OPSET}
    ModelCard.model_validate(card)
    writer.write(name, version, {**files, "model.json": json.dumps(card, indent=2).encode()})
    return card


def fashion_repo(writer: RepoWriter, **kw) -> RepoWriter:
    """The three served kinds beside a classifier: `dcgan`, `ae`, `vae`, and `lin` (image classifier)."""
    writer.add("lin")
    for name in ("dcgan", "ae", "vae"):
        add_generative(writer, name, {"dcgan": "gan"}.get(name, name), **kw)
    return writer
