"""Dataset loaders. Each returns plain tensors; batching lives in `training.data.batches`."""
