"""The data plane: ONNX sessions, the dynamic batcher, the model repository, and task adapters."""
