"""The training engine shared by every model family: optimisers, schedules, the loop, checkpoints,
history and plots, and DistributedDataParallel under torchrun."""
