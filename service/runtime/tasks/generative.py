"""Generators and autoencoders: images out of codes (`/sample`) and, for autoencoders, images through their
code and back (`/reconstruct`) or to their code (`/embed`).

A seed names images: `zooserve.latent.draw` turns it into the codes (and classes) that training's reports
use too, and image i depends on the seed and i alone. The n rows go to the batcher of the graph that reads
codes (the model's own, or the further graph `latent.graph` names) as one request, and may share a batch
with other requests; every layer of these graphs computes a row from that row alone (convolutions run per
image, matrix products reduce along a row), so the same seed gives the same pixels whatever shares the
batch (tests/service/test_generative.py checks it with concurrent requests).

Which graph output holds the code an autoencoder's encoder makes: the one named as the decoder's code
input (`latent.input`, "code"), checked at load with the rest.
"""

from __future__ import annotations

from service.runtime.errors import BadInput, ModelLoadError, shown
from service.runtime.generation.sampling import draw_seed, is_int
from service.runtime.tasks.base import ClassifyRequest, ServedModel
from service.runtime.tasks.images import ImageInputs, encoded
from zooserve.card import ModelCard, TensorSpec
from zooserve.latent import draw, to_pixels


def _check_tensor(specs: list[TensorSpec], name: str, datatype: str, shape: list[int], where: str) -> None:
    spec = next((s for s in specs if s.name == name), None)
    if spec is None or spec.datatype != datatype or spec.shape != shape:
        got = f"{spec.datatype} {spec.shape}" if spec else f"none (it has {[s.name for s in specs]})"
        raise ModelLoadError(f"{where} {name!r} must be {datatype} {shape} as the card's latent and postprocess "
                             f"say; got {got}")


def check_decoder(decoder: ServedModel, card: ModelCard) -> ServedModel:
    """The graph that reads codes must take exactly the code (N, dim) FP32 (and the class (N,) INT64 of a
    conditional generator) and give the images (N, C, H, W) FP32 the postprocess reads."""
    latent, post, graph = card.latent, card.postprocess, decoder.card
    what = f"graph {graph.name!r}"
    wanted = {latent.input} | ({latent.condition} if latent.condition else set())
    if {s.name for s in graph.inputs} != wanted:
        raise ModelLoadError(f"{what} takes {sorted(s.name for s in graph.inputs)}; the card's latent says it "
                             f"reads {sorted(wanted)}")
    _check_tensor(graph.inputs, latent.input, "FP32", [-1, latent.dim], f"{what}: input")
    if latent.condition:
        _check_tensor(graph.inputs, latent.condition, "INT64", [-1], f"{what}: input")
    _check_tensor(graph.outputs, post.output, "FP32", [-1, post.channels, post.height, post.width], f"{what}: output")
    return decoder


class ImageDecoding(ServedModel):
    """What generators and autoencoders share: codes -> images through `self.decoder`, pixels in a format."""

    decoder: ServedModel | None = None  # the model or further graph that reads codes; None: no prior to sample
    kind = "model"  # in messages: "an unconditional generator"

    async def sample(self, n, *, seed, label, fmt: str, timeout_s: float) -> dict:
        """n images from `seed` (drawn and reported when None); a conditional generator's images are of class
        `label` (a label or its index), or of classes drawn from the seed when it is None."""
        card, latent = self.card, self.card.latent
        if latent.prior is None or self.decoder is None:
            raise BadInput(f"model {shown(self.name)} is {self.noun} without a prior: its codes come only from "
                           f"images, so it cannot sample new ones; /reconstruct and /embed serve it")
        limit = self.decoder.batcher.max_batch_size
        if not is_int(n) or not 1 <= n <= limit:
            raise BadInput(f'"n" must be an integer from 1 to {limit} (this model\'s max_batch_size), got {shown(n)}')
        classes = self.class_index(label)  # before any work: a bad class costs nothing
        seed = draw_seed() if seed is None else seed
        feeds = draw(latent, n, seed, classes=classes, labels=len(card.labels or ()))
        out = await self.decoder.infer(feeds, timeout_s=timeout_s)
        answer = {"model": self.name, "version": str(self.version), "seed": seed,
                  "images": await encoded(to_pixels(out[card.postprocess.output], card.postprocess), fmt)}
        if latent.condition:
            answer["classes"] = [card.labels[i] for i in feeds[latent.condition]]
        return answer

    def class_index(self, label) -> int | None:
        """The class a conditional generator is asked for: a label, or its index into the card's labels."""
        if label is None:
            return None
        labels = self.card.labels
        if self.card.latent.condition is None:
            raise BadInput(f'model {shown(self.name)} is an unconditional {self.kind}: its images have no class '
                           f'to ask for; leave out "class"')
        if isinstance(label, str):
            if label not in labels:
                raise BadInput(f'"class" must be one of the labels {shown(labels, 400)} (or an index), got '
                               f'{shown(label)}')
            return labels.index(label)
        if not is_int(label) or not 0 <= label < len(labels):
            raise BadInput(f'"class" must be a label or an index from 0 to {len(labels) - 1}, got {shown(label)}')
        return int(label)


class ImageGenerator(ImageDecoding):
    """A GAN's generator: its main graph reads the code z (and the class) and gives images."""

    noun, kind = "an image generator", "generator"

    def __init__(self, card, session, **kw):
        super().__init__(card, session, **kw)
        latent = card.latent
        if latent.prior is None:
            raise ModelLoadError("an image generator samples its codes from a prior: latent.prior is null")
        self.decoder = check_decoder(self.graphs[latent.graph] if latent.graph else self, card)


class Autoencoder(ImageDecoding, ImageInputs):
    """An autoencoder (plain or variational): its main graph reads images and gives their code and their
    reconstruction; its decoder graph (`latent.graph`) turns codes into images, sampled from the prior if
    the card has one (a VAE)."""

    noun, kind = "an autoencoder", "autoencoder"

    def __init__(self, card, session, **kw):
        super().__init__(card, session, **kw)
        latent, post, pre = card.latent, card.postprocess, card.preprocess
        if pre is None or pre.kind != "image" or len(card.inputs) != 1:
            raise ModelLoadError("an autoencoder's main graph reads one image input, as its image preprocess says")
        _check_tensor(card.outputs, latent.input, "FP32", [-1, latent.dim], "main graph: output (the code)")
        _check_tensor(card.outputs, post.output, "FP32", [-1, post.channels, post.height, post.width],
                      "main graph: output (the reconstruction)")
        if latent.graph:
            self.decoder = check_decoder(self.graphs[latent.graph], card)
        elif latent.prior is not None:
            raise ModelLoadError("an autoencoder with a prior samples through its decoder graph: latent.graph "
                                 "names none")

    async def _encoded(self, request: ClassifyRequest, timeout_s: float) -> dict:
        """Images -> the main graph's outputs: code (N, dim), reconstruction (N, C, H, W), ..."""
        if request.texts is not None:
            raise BadInput(f"model {shown(self.name)} is an autoencoder of images: send \"images\", \"arrays\" "
                           f"or multipart \"files\"")
        batch = await self.image_batch(request)
        return await self.infer({self.card.inputs[0].name: batch}, timeout_s=timeout_s)

    async def reconstruct(self, request: ClassifyRequest, *, fmt: str, timeout_s: float) -> dict:
        out = await self._encoded(request, timeout_s)
        images = to_pixels(out[self.card.postprocess.output], self.card.postprocess)
        return {"model": self.name, "version": str(self.version), "images": await encoded(images, fmt)}

    async def embed(self, request: ClassifyRequest, *, timeout_s: float) -> dict:
        codes = (await self._encoded(request, timeout_s))[self.card.latent.input]  # (N, dim) float32
        return {"model": self.name, "version": str(self.version), "codes": codes}  # orjson writes the array
