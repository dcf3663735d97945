"""Tasks say how a dataset becomes batches and how a batch becomes a loss."""
