"""A multilayer perceptron written from scratch in numpy: forward propagation, backpropagation and
mini-batch gradient descent spelled out, with no torch and no autograd (model.py), and its ONNX graph
built from the trained weights (onnx_graph.py). The script that trains it is training/train_mlp.py."""
