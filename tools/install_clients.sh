#!/usr/bin/env bash
# Install the Debian packages that build the Go and Kotlin gRPC clients in tests/clients/.
#
# Idempotent: asks dpkg which packages are missing and runs apt-get only for those, so a
# second run takes well under a second. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  # protoc 3.21 and the Go generators.
  protobuf-compiler
  protoc-gen-go
  protoc-gen-go-grpc
  # Go 1.19 and the libraries the client imports, built in GOPATH mode.
  golang-go
  golang-google-grpc-dev
  golang-google-protobuf-dev
  golang-google-genproto-dev
  # Without the 1.5 package apt picks github.com/golang/protobuf 1.3, whose Struct
  # marshalling panics against protobuf-go 1.28.
  golang-github-golang-protobuf-1-5-dev
  # grpc-java 1.41, its protoc plugin and the runtime jars the Kotlin client loads.
  libgrpc-java
  protobuf-compiler-grpc-java-plugin
  libprotobuf-java
  libnetty-java
  libperfmark-java
  libgoogle-gson-java
  libguava-java
  libgoogle-common-protos-java
  # javax.annotation.Generated, which the grpc-java stubs use and JDK 17 lacks.
  libgeronimo-annotation-1.3-spec-java
  # kotlinc 1.3 and a JDK.
  kotlin
  default-jdk-headless
)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "${package}" 2>/dev/null || true)
  [[ "${status}" == "install ok installed" ]] || missing+=("${package}")
done

if ((${#missing[@]} == 0)); then
  echo "install_clients: all ${#packages[@]} packages are installed" >&2
  exit 0
fi

sudo=()
if ((EUID != 0)); then
  sudo=(sudo)
fi

echo "install_clients: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
