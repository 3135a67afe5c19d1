#!/usr/bin/env bash
# Generate the Go stubs of the chat API and build tests/clients/go/chat_client.go.
#
# Usage: build_go.sh OUT_DIR
# Writes OUT_DIR/gopath/src/... (the generated packages) and OUT_DIR/chat_client.
# Uses only Debian's Go toolchain and libraries (tools/install_clients.sh), in GOPATH
# mode with no network. GOCACHE may point at a cache shared between builds.
set -euo pipefail

if (($# != 1)); then
  echo "usage: build_go.sh OUT_DIR" >&2
  exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)

for tool in protoc protoc-gen-go protoc-gen-go-grpc go; do
  if ! command -v "${tool}" >/dev/null; then
    echo "build_go: ${tool} is not installed; run tools/install_clients.sh" >&2
    exit 1
  fi
done

gopath="${out}/gopath"
rm -rf "${gopath}"
mkdir -p "${gopath}/src"

# The go_package options place the packages under
# github.com/aigateway/aigateway/gen/go/aigateway/<area>/v1 inside GOPATH.
protoc -I "${root}/protos" \
  --go_out="${gopath}/src" \
  --go-grpc_out="${gopath}/src" \
  "${root}/protos/aigateway/type/v1/chat.proto" \
  "${root}/protos/aigateway/chat/v1/chat_service.proto"

# Debian 12 packages grpc-go 1.33 and protobuf-go 1.28 for GOPATH builds only.
GO111MODULE=off GOPROXY=off GOFLAGS= \
  GOPATH="${gopath}:/usr/share/gocode" \
  GOCACHE="${GOCACHE:-${out}/go-build-cache}" \
  go build -o "${out}/chat_client" "${root}/tests/clients/go/chat_client.go"
