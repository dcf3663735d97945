"""schemathesis hooks for tests/service/test_schema_fuzz.py (loaded by name from schemathesis.toml).

A generated model name is almost never one the server has, so every request would stop at the 404. These
hooks draw the name from the models that serve the operation (or keep the generated one, for the 404s), and
the version from those the repository holds. Likewise a generated tensor never fits a model: half the
inference bodies become images the classifiers take, with drawn output options (binary, classification).
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

SHIPPED = ("fashion-lenet", "tweets-transformer-int8", "island-lstm", "island-ngram-word3")  # from models/
TEST_MODEL = "lin"  # tests/service/conftest.py's classifier, versions 1 and 2
GENERATIVE = ("dcgan", "vae")  # tests/service/generative_models.py's conditional GAN and VAE (with "vae.decoder")
LANGUAGE_MODELS = ("island-lstm", "island-ngram-word3")
FIT = {"/classify": ("fashion-lenet", "tweets-transformer-int8", TEST_MODEL), "/score": LANGUAGE_MODELS,
       "/generate": LANGUAGE_MODELS, "/sample": GENERATIVE, "/reconstruct": ("vae",),
       "/embed": ("vae",)}  # a part of the path -> the models that serve it; elsewhere, all


def models_for(path: str) -> tuple[str, ...]:
    return next((names for part, names in FIT.items() if part in path),
                (TEST_MODEL, *SHIPPED, *GENERATIVE, "vae.decoder"))


@schemathesis.hook
def flatmap_path_parameters(context, params):
    if not params:
        return st.just(params)
    drawn = {"model": st.sampled_from([*models_for(context.operation.path), params.get("model")]),
             "version": st.sampled_from([1, 2, params.get("version")])}
    return st.fixed_dictionaries({k: drawn.get(k, st.just(v)) for k, v in params.items()})


def image_batch(rows: int, value: float, options: dict) -> dict:
    """An inference body for the classifiers ("lin", "fashion-lenet"): FP32 input (rows, 1, 28, 28)."""
    tensor = {"name": "input", "shape": [rows, 1, 28, 28], "datatype": "FP32", "data": [value] * rows * 784}
    return {"inputs": [tensor], **options}


OUTPUT_OPTIONS = st.fixed_dictionaries({}, optional={
    "outputs": st.lists(st.fixed_dictionaries({"name": st.just("logits")}, optional={
        "parameters": st.fixed_dictionaries({}, optional={"binary_data": st.booleans(),
                                                          "classification": st.integers(1, 12)})}), max_size=1),
    "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": st.booleans()}),
    "id": st.text(max_size=8)})


@schemathesis.hook
def flatmap_body(context, body):
    if not isinstance(body, dict):
        return st.just(body)
    if context.operation.path == "/v1/completions":
        return st.sampled_from([*LANGUAGE_MODELS, body.get("model")]).map(lambda m: {**body, "model": m})
    if context.operation.path.endswith("/infer"):
        return st.one_of(st.just(body), st.builds(image_batch, st.integers(1, 3), st.floats(-3, 3), OUTPUT_OPTIONS))
    if context.operation.path.endswith(("/reconstruct", "/embed")):  # pixel images of the VAE's size
        pixels = st.builds(lambda rows, v: {"arrays": [[[v] * 28] * 28] * rows}, st.integers(1, 3), st.integers(0, 255))
        return st.one_of(st.just(body), pixels)
    if context.operation.path.endswith("/sample"):  # within the models' max_batch_size of 16
        return st.one_of(st.just(body), st.fixed_dictionaries({"n": st.integers(1, 16)}, optional={
            "seed": st.integers(0, 2**63 - 1), "format": st.sampled_from(["png", "array"])}))
    return st.just(body)


@schemathesis.hook
def before_call(context, case, **kwargs):
    """/reconstruct and /embed take multipart files too: the pixel bodies flatmap_body made go as JSON."""
    if case.operation.path.endswith(("/reconstruct", "/embed")) and isinstance(case.body, dict) and "arrays" in case.body:
        case.media_type = "application/json"
