"""What runs a model: its onnxruntime session (`session`), the dynamic batcher (`batcher`) and the count of
requests on their way to it (`arrivals`)."""
