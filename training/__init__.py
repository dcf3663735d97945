"""Training side of zooserve: datasets, the model zoo, one training engine, ONNX export.

This package may import torch. `service/` never imports it: the two share only the files in `models/`.
"""
