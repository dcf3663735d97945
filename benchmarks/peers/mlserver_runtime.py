"""Peer side: an MLServer custom runtime serving an ONNX file with onnxruntime (MLServer ships no ONNX
runtime of its own, so this is what its docs prescribe: a subclass of `mlserver.MLModel`).

Runs in MLServer's virtualenv, started by `mlserver start <folder>` (benchmarks/peers/targets.py writes
settings.json and one model-settings.json per model there). MLServer parses the V2 body into its pydantic
InferenceRequest, its adaptive batcher merges requests along the first axis (max_batch_size,
max_batch_time from zooserve's card), and `predict` sees the merged (B, 1, 28, 28) tensor."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

from peer_onnx import Session


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        self._session = Session(await get_model_uri(self.settings))
        # One inference thread per model, as zooserve's batcher: onnxruntime releases the GIL, so the event
        # loop keeps parsing requests while a batch runs (with parallel_workers 0 there is no other process).
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"ort-{self.name}")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])  # (B, 1, 28, 28) float32
        y = await asyncio.get_running_loop().run_in_executor(self._thread, self._session.run, x)
        return InferenceResponse(model_name=self.name, model_version=self.version,
                                 outputs=[NumpyCodec.encode_output(self._session.output, y)])
