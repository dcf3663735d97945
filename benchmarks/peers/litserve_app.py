"""Peer side: the same ONNX files behind LitServe, one `LitAPI` per model at /v2/models/<name>/infer.

    <litserve venv>/bin/python benchmarks/peers/litserve_app.py PORT MODELS_JSON

MODELS_JSON: [{"name": ..., "path": ".../model.onnx", "max_batch_size": 128, "max_delay_ms": 2.0}, ...]
(zooserve's card values). LitServe parses the body with `request.json()`, its inference worker process
gathers up to max_batch_size requests within batch_timeout, and decode -> batch -> predict -> unbatch ->
encode answers the V2 shape zooserve answers. Runs in LitServe's virtualenv: imports nothing from the project.
"""

import json
import sys

import litserve as ls
import numpy as np

from peer_onnx import Session, v2_input, v2_output


class OnnxAPI(ls.LitAPI):
    def __init__(self, name: str, path: str, max_batch_size: int, max_delay_ms: float):
        super().__init__(max_batch_size=max_batch_size, batch_timeout=max_delay_ms / 1000,
                         api_path=f"/v2/models/{name}/infer")
        self.model_name, self.path = name, path

    def setup(self, device):
        self.session = Session(self.path)

    def decode_request(self, request: dict) -> np.ndarray:
        return v2_input(request)  # (1, 1, 28, 28): one image per request

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(inputs)  # (B, 1, 28, 28)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(x)  # (B, 10)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return [output[i:i + 1] for i in range(len(output))]  # B x (1, 10)

    def encode_response(self, output: np.ndarray) -> dict:
        return v2_output(self.model_name, self.session.output, output)


def main(port: int, models: list[dict]) -> None:
    apis = [OnnxAPI(m["name"], m["path"], m["max_batch_size"], m["max_delay_ms"]) for m in models]
    # One inference worker (per API) on the CPU and one API server process; ZeroMQ between them
    # (fast_queue, which LitServe's docs advise above 100 requests/s).
    server = ls.LitServer(apis, accelerator="cpu", devices=1, workers_per_device=1, fast_queue=True)
    server.run(host="127.0.0.1", port=port, num_api_servers=1, log_level="warning", generate_client_file=False)


if __name__ == "__main__":  # LitServe starts its workers as new processes, which import this file again
    main(int(sys.argv[1]), json.loads(sys.argv[2]))
