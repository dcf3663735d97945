# syntax=docker/dockerfile:1
# zooserve images, one file, three targets:
#   serve      CPU serving: the serving install only (`pip install .`, never torch) + models/, non-root
#   serve-gpu  the same service on a CUDA runtime, with onnxruntime-gpu (CUDAExecutionProvider first)
#   train      offline training jobs: the `train` extras with the CPU build of torch, writing to /srv/models
#
#   docker build --target serve -t zooserve:0.1.0 .
#   docker build --target serve-gpu -t zooserve:0.1.0-gpu .
#   docker build --target train -t zooserve-train:0.1.0 .
#
# Base images are pinned by tag; the serve stack by deploy/docker/constraints-serve.txt.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

# --- build the serving virtualenv; nothing of this stage but /opt/venv reaches the image ---------------
FROM ${PYTHON_IMAGE} AS serve-build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY zooserve ./zooserve
COPY service ./service
COPY deploy/docker/constraints-serve.txt /tmp/constraints.txt
# --no-compile: no .pyc files (about 37 MB for this stack); the root filesystem is read-only at run time
# anyway, so they could not be written later either. pip and setuptools (which `venv` seeds on 3.11; 8 MB,
# imported by nothing in the serving stack) leave the venv once pip has done its job.
# The installed distributions' own test suites (numpy's) and onnxruntime's offline tooling (transformers,
# quantization, tools: 5 MB) go too: the service imports none of them. The install itself (what, which
# versions) is the README's, from the same constraints file; it has no Hugging Face `tokenizers` (the service
# reads tokenizer.json itself, zooserve/wordpiece.py), and uvicorn without its `standard` extra (+ uvloop, httptools).
# deploy/image_size.py runs these lines to estimate the image's size (CI: deploy/validate.sh).
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-compile -c /tmp/constraints.txt . \
    && /opt/venv/bin/pip uninstall -y pip setuptools \
    && site=$(/opt/venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
    && find "$site" -type d -name tests -prune -exec rm -rf {} + \
    && rm -rf "$site/onnxruntime/transformers" "$site/onnxruntime/quantization" "$site/onnxruntime/tools" \
    && /opt/venv/bin/python -c "import onnxruntime, numpy, PIL, uvloop, httptools, service.app" \
    && ! /opt/venv/bin/python -c "import torch" 2>/dev/null \
    && ! /opt/venv/bin/python -c "import tokenizers" 2>/dev/null

# --- serve: CPU serving image -------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS serve
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    ZOOSERVE_HOST=0.0.0.0 \
    ZOOSERVE_PORT=8000 \
    ZOOSERVE_WORKERS=1 \
    ZOOSERVE_REPOSITORY=/srv/models
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent zooserve
COPY --from=serve-build /opt/venv /opt/venv
# Owned by the service user so that a named volume created from this path (docker-compose.yml) is
# writable by the training job, which runs with the same uid. models/ is the default repository;
# models-extra/ stays out (.dockerignore): mount it and add it to ZOOSERVE_REPOSITORY to serve it.
COPY --chown=10001:10001 models /srv/models
WORKDIR /srv
USER 10001:10001
EXPOSE 8000
# Slim images have no curl: `zooserve healthcheck` (service/healthcheck.py) asks /v2/health/ready.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["zooserve", "healthcheck"]
# `zooserve serve` runs uvicorn with ZOOSERVE_WORKERS workers; with several it puts PROMETHEUS_MULTIPROC_DIR
# in a fresh directory under /tmp (a tmpfs or emptyDir when the root filesystem is read-only).
CMD ["zooserve", "serve"]

# --- serve-gpu: the same service on CUDA 12 + cuDNN 9, with onnxruntime-gpu ------------------------------
FROM ${CUDA_IMAGE} AS serve-gpu
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    ZOOSERVE_HOST=0.0.0.0 \
    ZOOSERVE_PORT=8000 \
    ZOOSERVE_WORKERS=1 \
    ZOOSERVE_REPOSITORY=/srv/models
# ZOOSERVE_PROVIDERS stays unset: the default order is CUDA when onnxruntime offers it, then CPU.
# Ubuntu 22.04's Python is 3.10 (the project supports >= 3.10). The apt packages follow the pinned base
# image's release rather than exact versions, which Ubuntu withdraws from its mirrors after updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent zooserve
WORKDIR /src
COPY pyproject.toml README.md ./
COPY zooserve ./zooserve
COPY service ./service
# onnxruntime and onnxruntime-gpu are two distributions of one `onnxruntime` module: swap the CPU one out.
# The constraints file is resolved for CPython 3.11, so it does not apply to this 3.10 environment.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-compile . \
    && /opt/venv/bin/pip uninstall -y onnxruntime \
    && /opt/venv/bin/pip install --no-compile onnxruntime-gpu==1.31.1 \
    && /opt/venv/bin/pip uninstall -y pip \
    && rm -rf /src
COPY --chown=10001:10001 models /srv/models
WORKDIR /srv
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["zooserve", "healthcheck"]
CMD ["zooserve", "serve"]

# --- train: offline training jobs (torch CPU build), writing into the models volume ---------------------
FROM ${PYTHON_IMAGE} AS train
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/work
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /work zooserve
WORKDIR /src
COPY pyproject.toml README.md ./
COPY zooserve ./zooserve
COPY service ./service
COPY training ./training
# torch first from the PyTorch CPU index: the PyPI build of the same version pulls several GB of CUDA.
# DL3013: torch is pinned; the rest of the train extras follow pyproject.toml's ranges (a train-only
# lock file, resolved against the CPU index, would pin them too: not done yet).
# hadolint ignore=DL3013
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install ".[train]"
WORKDIR /work
USER 10001:10001
# Checkpoints go to /work/runs, Fashion-MNIST to /work/.cache/zooserve unless --data or ZOOSERVE_DATA says
# where it is; the models volume is mounted on /srv/models.
CMD ["zooserve", "train", "fashion-lenet", "--out", "/srv/models", "--runs", "/work/runs", "--no-progress"]
