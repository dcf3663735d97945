"""Wire formats: the Open Inference Protocol v2 with Triton's binary tensor extension."""
