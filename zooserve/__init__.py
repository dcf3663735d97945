"""The contract that training and serving share, and nothing else: the model card schema (`card`), the text
rules and vocabularies (`text`), numeric helpers both sides must compute alike (`numeric`) and the CPU's
instruction-set level (`cpu`). Torch-free and onnxruntime-light: `training/` and `service/` both import it,
and neither imports the other. `zooserve.cli` is the `zooserve` command."""
