"""The infer task: check a request's tensors against the card, then run them through the batcher."""

from __future__ import annotations

import numpy as np

from service.runtime.errors import BadInput, shown
from service.runtime.onnx_model import V2_TO_NUMPY
from service.runtime.repository import Loaded


def check_inputs(loaded: Loaded, inputs: dict[str, np.ndarray]) -> None:
    """Names, datatypes and shapes must match the card (-1 = any size); rows must fit one batch."""
    card = loaded.card
    expected = {s.name: s for s in card.inputs}
    if set(inputs) != set(expected):
        raise BadInput(f"model {shown(card.name)} takes inputs {shown(sorted(expected), 400)}, got {shown(sorted(inputs))}")
    for name, arr in inputs.items():
        spec = expected[name]
        if arr.dtype != np.dtype(V2_TO_NUMPY[spec.datatype]):
            raise BadInput(f"input {shown(name)}: datatype must be {spec.datatype}")
        if arr.ndim != len(spec.shape) or any(s != -1 and s != d for s, d in zip(spec.shape, arr.shape)):
            raise BadInput(f"input {shown(name)}: shape must be {spec.shape} (-1 = any), got {list(arr.shape)}")
        if arr.shape and arr.shape[0] == 0:
            raise BadInput(f"input {shown(name)}: the batch is empty")
    rows = {name: arr.shape[0] for name, arr in inputs.items() if arr.ndim}
    if loaded.model.batchable and len(set(rows.values())) > 1:
        raise BadInput(f"inputs disagree on the batch size (their first axis): {rows}")
    rows = next(iter(inputs.values())).shape[0]
    limit = loaded.batcher.max_batch_size
    if loaded.model.batchable and rows > limit:
        raise BadInput(f"batch of {rows} rows exceeds this model's max_batch_size {limit}")


async def infer(loaded: Loaded, inputs: dict[str, np.ndarray], *, timeout_s: float,
                requested: list[str] | None = None) -> dict[str, np.ndarray]:
    check_inputs(loaded, inputs)
    if requested is not None:
        unknown = set(requested) - set(loaded.model.output_names)
        if unknown:
            raise BadInput(f"model {shown(loaded.name)} has no output(s) {shown(sorted(unknown))}; it has {shown(loaded.model.output_names, 400)}")
    return await loaded.batcher.submit(inputs, timeout_s=timeout_s)
