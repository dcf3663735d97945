"""ONNX export with a parity check, INT8 quantization, and model-card writing."""
