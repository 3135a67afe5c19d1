#!/usr/bin/env bash
# Install the Cerbos PDP binary from the npm package @cerbos/cerbos-linux-x64 and print its path.
#
# Usage: tools/install_cerbos.sh [DEST]
#   DEST defaults to .tools/cerbos under the repository root. Running the script again
#   reuses an installed binary of the same version and downloads nothing.
#
# The npm package carries the static binary itself, so npm is the only download.
# CERBOS_VERSION overrides the pinned version.
set -euo pipefail

version="${CERBOS_VERSION:-0.55.0}"
package="@cerbos/cerbos-linux-x64"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-${repo_root}/.tools/cerbos}"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *)
    echo "install_cerbos.sh: ${package} is built for Linux x86-64, not $(uname -s) $(uname -m)" >&2
    exit 1
    ;;
esac

mkdir -p "${dest}/bin"
dest="$(cd "${dest}" && pwd)"
link="${dest}/bin/cerbos"
binary="${dest}/node_modules/${package}/cerbos-linux-x64"

installed_version() {
  [[ -x "${binary}" ]] || return 1
  "${binary}" --version 2>/dev/null | head -n 1
}

if [[ "$(installed_version || true)" != "${version}" ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "install_cerbos.sh: npm is not installed. Install Node.js and npm first (apt-get install npm)." >&2
    exit 1
  fi
  # --ignore-scripts because the package needs no install hooks, and none should run.
  npm install --prefix "${dest}" --no-save --no-audit --no-fund --ignore-scripts \
    --loglevel=error "${package}@${version}" >&2
  if [[ "$(installed_version || true)" != "${version}" ]]; then
    echo "install_cerbos.sh: ${binary} does not report version ${version} after npm install" >&2
    exit 1
  fi
fi

ln -sfn "${binary}" "${link}"
echo "${link}"
