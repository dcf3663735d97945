"""zooserve against MLServer and LitServe: the same ONNX files, the same onnxruntime session options and the
same load generator, in one run, from one command.

    python benchmarks/peers                      # fashion-lenet and fashion-resnet, 1 / 16 / 64 connections
    python benchmarks/peers --dry-run            # tiny counts: a smoke test
    python benchmarks/peers --peers none         # zooserve and bare only (no peer venv needed)

The peers are installed from PyPI (pinned, with zooserve's own onnxruntime and numpy versions) into their
own throwaway venvs under --venvs, never into the project's; later runs reuse them. Targets, one server at a
time, on 127.0.0.1: serve_bench.py's parse-only FastAPI endpoint (bare), MLServer (a custom onnxruntime
runtime), LitServe (a LitAPI) and zooserve. Per target, model and connection level: req/s, p50, p99,
errors and the server's CPU in cores; zooserve's ratios to each; and a check that zooserve is ahead of both
peers at every level (exit code 1 on a miss or on any error). See benchmarks/README.md.
"""
