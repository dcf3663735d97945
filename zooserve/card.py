"""The model card (`model.json`): the one contract between `training/` (which writes it) and `service/`
(which reads it). Defined once, here, with pydantic only, so both sides import it without torch.

`python -m zooserve.card` prints the JSON Schema; `python -m zooserve.card models/` validates every card.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

CARD_FILE = "model.json"
SCHEMA_VERSION = 1
Datatype = Literal["FP64", "FP32", "FP16", "INT64", "INT32", "INT8", "UINT8", "BOOL", "BYTES"]  # Open Inference Protocol names
Task = Literal["image-classification", "text-classification", "language-model", "image-generation", "autoencoder"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    name: str
    datatype: Datatype
    shape: list[int] = Field(min_length=1, description="-1 marks a dynamic axis")
    # Left out of the JSON when false, so cards and V2 metadata of graphs without one read as before.
    optional: bool = Field(False, exclude_if=lambda v: not v,
                           description="inputs only: the graph holds a default for it (an initializer that a "
                                       "feed overrides, as Triton's `optional` inputs), so a request may leave "
                                       "it out, e.g. an n-gram model's `candidates`")

    @model_validator(mode="after")
    def _dims(self):
        if any(d < -1 or d == 0 for d in self.shape):
            raise ValueError(f"{self.name}: dimensions are positive or -1 (dynamic), got {self.shape}")
        return self


class ImagePreprocess(_Strict):
    kind: Literal["image"] = "image"
    height: int
    width: int
    channels: int
    layout: Literal["NCHW"] = "NCHW"
    scale: float = Field(description="multiply raw 0-255 pixels by this before normalising")
    mean: list[float]
    std: list[float]

    @model_validator(mode="after")
    def _per_channel(self):
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("mean and std need one value per channel")
        return self


class TextPreprocess(_Strict):
    kind: Literal["text"] = "text"
    tokenizer: Literal["char", "word", "wordpiece", "bpe"]
    vocab_file: str | None = Field(None, description="char/word models: the vocabulary beside the model (tokens in "
                                                     "id order and special tokens)")
    tokenizer_file: str | None = Field(None, description="wordpiece/bpe: a Hugging Face `tokenizers` file beside "
                                                         "the model")
    max_length: int | None = Field(None, description="longest input in tokens, special tokens included")
    truncation: str | None = Field(None, description="what happens to longer inputs, e.g. 'keep the first "
                                                     "max_length - 2 tokens'")
    vocab_size: int = Field(ge=2)
    lowercase: bool = False
    pattern: str | None = Field(None, description="regular expression (Python re) that splits words")
    special_tokens: dict[str, str] = Field(default_factory=dict, description="role (unk, bos, eos) -> token")
    eos_text: str | None = Field(None, description="how the end-of-sequence token reads in text")
    context_length: int | None = Field(None, description="tokens of context the model reads (n-gram order - 1)")

    @model_validator(mode="after")
    def _one_vocabulary(self):
        if (self.vocab_file is None) == (self.tokenizer_file is None):
            raise ValueError("a text model names exactly one of vocab_file (char, word) or tokenizer_file "
                             "(wordpiece, bpe)")
        return self


def _preprocess_kind(value) -> str:
    # Cards written before text models existed have no "kind": they are image cards.
    return value.get("kind", "image") if isinstance(value, dict) else getattr(value, "kind", "image")


Preprocess = Annotated[Union[Annotated[ImagePreprocess, Tag("image")], Annotated[TextPreprocess, Tag("text")]],
                       Discriminator(_preprocess_kind)]


class ImagePostprocess(_Strict):
    """How a graph's image output becomes pixels (generators, decoders, autoencoders' reconstructions)."""

    kind: Literal["image"] = "image"
    output: str = Field(description="the graph output holding images, (N, C, H, W)")
    height: int
    width: int
    channels: int
    layout: Literal["NCHW"] = "NCHW"
    range: list[float] = Field([0.0, 1.0], min_length=2, max_length=2,
                               description="the values that mean black and white: pixel = (value - lo) / (hi - lo) "
                                           "* 255, clipped and rounded")


class Latent(_Strict):
    """The code a decoder or generator reads: the input that holds it, its size, and the prior to sample it from."""

    input: str = Field(description="the graph input holding the code, (N, dim) FP32")
    dim: int = Field(ge=1)
    prior: Literal["normal"] | None = Field(description="'normal': z ~ N(0, I) gives new images (VAE, GAN); None: "
                                                        "codes only come from the encoder (a plain autoencoder)")
    condition: str | None = Field(None, description="a conditional generator's class input, (N,) INT64 indexing "
                                                    "the card's labels; None if unconditional")
    graph: str | None = Field(None, description="the role of the graph (in `graphs`) that reads the code; None: "
                                                "the main graph")


class Batching(_Strict):
    max_batch_size: int = Field(ge=1)
    max_delay_ms: float = Field(ge=0)


class MeasuredOn(_Strict):
    """Where a figure was measured. Float kernels round differently across CPUs (last bits); INT8 graphs in the
    project's format compute the same integers everywhere (see training/export/quantize.py)."""

    isa: str = Field(description="the CPU level that picks onnxruntime's kernels: avx2, avx512, avx-vnni, "
                                 "avx512-vnni, amx (zooserve.cpu.isa_level)")
    cpu: str = Field(description="the CPU's model name")
    onnxruntime: str
    emulator: str | None = Field(None, description="the command that emulated this CPU, e.g. "
                                                   "'qemu-x86_64 -cpu EPYC-Rome'; None on the real CPU")


class SplitMetrics(_Strict):
    split: str
    examples: int
    measured_on: MeasuredOn | None = None
    accuracy: float | None = None
    cross_entropy: float | None = Field(None, description="nats per item (image or token)")
    bits_per_token: float | None = None
    perplexity: float | None = None
    macro_f1: float | None = Field(None, description="classifiers: unweighted mean of the per-class F1 scores")
    # Autoencoders and generators (docs/generative.md says how each is measured).
    reconstruction_mse: float | None = Field(None, description="mean squared error per pixel, pixels in [0, 1]")
    negative_elbo: float | None = Field(None, description="VAE: -ELBO in nats per image (reconstruction + kl)")
    reconstruction_nll: float | None = Field(None, description="VAE: -E[log p(x|z)] in nats per image")
    kl: float | None = Field(None, description="VAE: KL(q(z|x) || N(0, I)) in nats per image")
    frechet_distance: float | None = Field(None, description="Frechet distance between these images' features and "
                                                             "the test images' (feature_model's penultimate layer)")
    feature_model: str | None = Field(None, description="the classifier whose features and predictions measure "
                                                        "images, e.g. 'fashion-resnet/1'")
    class_shares: dict[str, float] | None = Field(None, description="label -> share of the images feature_model "
                                                                    "assigns to it")
    mean_top1_probability: float | None = Field(None, description="feature_model's mean top-1 probability")


class Dataset(_Strict):
    name: str
    sha256: dict[str, str] = Field(description="file -> sha256 of its (decompressed) bytes")
    official: bool = Field(description="the checksums match the published release")
    splits: dict[str, int] = Field(description="split name -> number of examples")
    split_seed: int | None = Field(None, description="seed of a random split; None for a split by position")
    split_rule: str | None = None


class Parity(_Strict):
    reference: Literal["torch", "numpy", "onnx-fp32", "onnx-step"] = Field(
        description="what the graph was compared with: the PyTorch module, the numpy reference (n-grams), (for "
                    "quantized graphs) the float ONNX graph, or (a language model's steps graph) the model's own "
                    "graph stepped a token at a time and sampled in numpy")
    max_abs_diff: float = Field(description="largest |onnxruntime - reference| over the parity inputs")
    argmax_agreement: float | None = Field(None, description="classifiers and LMs: share of rows whose argmax agrees; "
                                                             "None for graphs that output images or codes")
    inputs: int
    opset: int
    onnxruntime: str


class IsaCheck(_Strict):
    """The test split run again on another CPU level, compared with the card's own run."""

    measured_on: MeasuredOn
    examples: int
    accuracy: float | None = None
    cross_entropy: float | None = None
    max_abs_diff: float = Field(description="largest |output here - output in the card's run| over the split")


class Quantization(_Strict):
    method: str
    calibration_examples: int
    source_model: str
    accuracy_change: float | None = Field(None, description="quantized minus float test accuracy")
    cross_entropy_change: float | None = Field(None, description="quantized minus float test nats per token")
    format: str | None = Field(None, description="integer formats, e.g. uint8 activations x int8 weights in "
                                                 "[-64, 64], which no U8S8 kernel can saturate")
    weight_range: list[int] | None = Field(None, min_length=2, max_length=2,
                                           description="smallest and largest int8 weight in the graph")
    isa_checks: list[IsaCheck] = Field(default_factory=list, description="the test split on other CPU levels")


class Training(_Strict):
    arch: str
    model_config_: dict = Field(alias="model_config")
    train_config: dict
    optim_config: dict = Field(default_factory=dict)
    seed: int | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    wall_time_s: float
    parameters: int = Field(description="trainable weights, or table entries for an n-gram model")
    world_size: int = 1
    device: str = "cpu"
    torch: str | None = None
    onnx: str


class Artifact(_Strict):
    file: str
    bytes: int
    sha256: str


class Graph(_Strict):
    """A second ONNX graph in the same version folder, e.g. an autoencoder's decoder (code -> image). The service
    serves it over V2 as the model `<name>.<role>` (as Triton serves each graph of an ensemble as a model)."""

    role: str = Field(pattern=r"^[a-z][a-z0-9_-]*$", description="what it is: 'decoder', 'encoder', ...")
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    parity: Parity
    artifact: Artifact


class ModelCard(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    version: int = Field(ge=1)
    task: Task
    family: str = Field(pattern=r"^[a-z]+/[a-z0-9_-]+$")
    description: str
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    preprocess: Preprocess | None = Field(None, description="how inputs are made from images or text; None for a "
                                                            "generator, whose input is a code")
    postprocess: ImagePostprocess | None = Field(None, description="generators and autoencoders: how an image "
                                                                   "output becomes pixels")
    latent: Latent | None = Field(None, description="generators and autoencoders: the code and its prior")
    labels: list[str] | None = None
    batching: Batching
    metrics: list[SplitMetrics]
    dataset: Dataset
    parity: Parity
    quantization: Quantization | None = None
    training: Training
    artifact: Artifact
    extra_files: list[Artifact] = Field(default_factory=list, description="vocabulary, ARPA file, ...")
    graphs: list[Graph] = Field(default_factory=list, description="further ONNX graphs in the version folder, "
                                                                  "e.g. a VAE's decoder")
    created: str

    @model_validator(mode="after")
    def _outputs_are_never_optional(self):
        if any(o.optional for o in self.outputs):
            raise ValueError("only inputs can be optional")
        if all(i.optional for i in self.inputs):
            raise ValueError("at least one input is required")
        return self

    @model_validator(mode="after")
    def _labels_match_logits(self):
        if self.task.endswith("classification"):
            if not self.labels:
                raise ValueError("a classifier's card lists its labels")
            classes = self.outputs[0].shape[-1]
            if classes != len(self.labels):
                raise ValueError(f"{len(self.labels)} labels but the output has {classes} classes")
        return self

    @model_validator(mode="after")
    def _task_sections(self):
        if self.task in ("image-generation", "autoencoder"):
            if self.postprocess is None or self.latent is None:
                raise ValueError(f"a {self.task} card says how its images are made (postprocess) and its code (latent)")
            roles = [g.role for g in self.graphs]
            if len(set(roles)) != len(roles):
                raise ValueError(f"graph roles repeat: {roles}")
            if self.latent.graph is not None and self.latent.graph not in roles:
                raise ValueError(f"latent.graph {self.latent.graph!r} is not one of the graphs {roles}")
            if self.latent.condition is not None and not self.labels:
                raise ValueError("a conditional generator's card lists the labels its condition indexes")
        elif self.preprocess is None:
            raise ValueError(f"a {self.task} card says how its inputs are made (preprocess)")
        if self.task == "autoencoder" and self.preprocess is None:
            raise ValueError("an autoencoder's card says how its input images are made (preprocess)")
        return self

    def graph(self, role: str) -> Graph:
        """The further graph with this role (KeyError if the card has none)."""
        for g in self.graphs:
            if g.role == role:
                return g
        raise KeyError(role)

    def split(self, name: str = "test") -> SplitMetrics:
        """The figures measured on one split (the test split by default)."""
        return next(m for m in self.metrics if m.split == name)


def load_card(path: Path) -> ModelCard:
    """Read and validate `<model dir>/model.json` (or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILE
    return ModelCard.model_validate_json(path.read_bytes())


def card_document(card: ModelCard, **exclude) -> dict:
    """The card as `model.json` holds it: unset (None) fields left out, except `latent.prior`, which the
    contract requires even when null (a plain autoencoder has no prior). `exclude`: model_dump's argument."""
    data = card.model_dump(mode="json", by_alias=True, exclude_none=True, **exclude)
    if card.latent is not None and "latent" in data:
        data["latent"]["prior"] = card.latent.prior
    return data


def save_card(model_dir: Path, card: ModelCard) -> None:
    """Write `card` to `<model_dir>/model.json`, as load_card reads it (every writer of a card comes here)."""
    (Path(model_dir) / CARD_FILE).write_text(json.dumps(card_document(card), indent=2) + "\n")


# The shipped models: models/ is the default repository (what `zooserve serve` and the images serve);
# models-extra/ holds those left out of it to keep one server within its memory budget (docs/performance.md).
SHIPPED_REPOSITORIES = os.pathsep.join(["models", "models-extra"])


def repository_roots(repository: str | Path | list) -> list[Path]:
    """A repository given as one folder, several joined by os.pathsep ("models:models-extra", as
    ZOOSERVE_REPOSITORY takes them), or a list of folders."""
    if isinstance(repository, (list, tuple)):
        return [Path(p) for p in repository]
    return [Path(p) for p in str(repository).split(os.pathsep) if p]


def find_cards(repository: str | Path | list) -> list[Path]:
    """Every `<name>/<version>/model.json` in a Triton-style model repository (one folder or several)."""
    return sorted(p for root in repository_roots(repository) for p in root.glob(f"*/*/{CARD_FILE}")
                  if p.parent.name.isdigit())


def model_folder(repository: str | Path | list, name: str) -> Path | None:
    """`<root>/<name>` in the first of the repository's folders that holds the model, or None."""
    return next((root / name for root in repository_roots(repository) if (root / name).is_dir()), None)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(json.dumps(ModelCard.model_json_schema(by_alias=True), indent=2))
        return 0
    failed = 0
    for path in find_cards(Path(args[0])):
        try:
            load_card(path)
            print(f"ok    {path}")
        except ValueError as exc:
            failed += 1
            print(f"FAIL  {path}: {exc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
