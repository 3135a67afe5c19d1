#!/usr/bin/env bash
# Generate the Java stubs of the chat API and build tests/clients/kotlin/ChatClient.kt.
#
# Usage: build_kotlin.sh OUT_DIR
# Writes OUT_DIR/java (generated sources), OUT_DIR/classes (compiled stubs and client)
# and OUT_DIR/chat_client, a launcher that runs the client on the JVM. Uses only
# Debian's protoc, grpc-java plugin, jars and kotlinc (tools/install_clients.sh).
set -euo pipefail

if (($# != 1)); then
  echo "usage: build_kotlin.sh OUT_DIR" >&2
  exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
jars=/usr/share/java

for tool in protoc grpc_java_plugin javac java kotlinc; do
  if ! command -v "${tool}" >/dev/null; then
    echo "build_kotlin: ${tool} is not installed; run tools/install_clients.sh" >&2
    exit 1
  fi
done

# Debian's proto-google-common-protos 1.16 predates google.rpc.ErrorInfo, so this script
# compiles google/rpc/status.proto and error_details.proto itself. They come from the
# googleapis-common-protos wheel in the project's venv, or from GOOGLE_RPC_PROTO_ROOT
# when it names a directory that contains google/rpc/.
rpc_root="${GOOGLE_RPC_PROTO_ROOT:-}"
if [[ -z "${rpc_root}" && -x "${root}/.venv/bin/python" ]]; then
  rpc_root=$("${root}/.venv/bin/python" -c \
    'import os, google.rpc; print(os.path.dirname(os.path.dirname(list(google.rpc.__path__)[0])))')
fi
if [[ ! -f "${rpc_root}/google/rpc/error_details.proto" ]]; then
  echo "build_kotlin: google/rpc/error_details.proto not found under '${rpc_root}';" \
    "run make install or set GOOGLE_RPC_PROTO_ROOT" >&2
  exit 1
fi

# Debian's netty-all.jar is empty, so the netty modules are listed one by one.
runtime=(
  grpc-api grpc-context grpc-core grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub
  protobuf guava gson perfmark-api
  netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-codec-socks
  netty-common netty-handler netty-handler-proxy netty-resolver netty-transport
  kotlin-stdlib
)
classpath=""
for jar in "${runtime[@]}"; do
  if [[ ! -f "${jars}/${jar}.jar" ]]; then
    echo "build_kotlin: ${jars}/${jar}.jar is missing; run tools/install_clients.sh" >&2
    exit 1
  fi
  classpath+="${jars}/${jar}.jar:"
done
# javax.annotation.Generated, which JDK 9 and later lack, is needed at compile time only.
compile_classpath="${classpath}${jars}/geronimo-annotation-1.3-spec.jar"

rm -rf "${out}/java" "${out}/classes"
mkdir -p "${out}/java" "${out}/classes"

protoc -I "${root}/protos" \
  --java_out="${out}/java" \
  --grpc-java_out="${out}/java" \
  --plugin=protoc-gen-grpc-java="$(command -v grpc_java_plugin)" \
  "${root}/protos/aigateway/type/v1/chat.proto" \
  "${root}/protos/aigateway/chat/v1/chat_service.proto"
protoc -I "${rpc_root}" --java_out="${out}/java" \
  "${rpc_root}/google/rpc/status.proto" \
  "${rpc_root}/google/rpc/error_details.proto"

find "${out}/java" -name '*.java' >"${out}/java-sources.txt"
javac -nowarn -encoding UTF-8 --release 11 -cp "${compile_classpath}" \
  -d "${out}/classes" @"${out}/java-sources.txt"

kotlinc -nowarn -jvm-target 1.8 -cp "${out}/classes:${compile_classpath}" \
  -d "${out}/classes" "${root}/tests/clients/kotlin/ChatClient.kt"

cat >"${out}/chat_client" <<LAUNCHER
#!/bin/sh
exec java -cp "${out}/classes:${classpath%:}" dev.aigateway.clients.ChatClientKt "\$@"
LAUNCHER
chmod +x "${out}/chat_client"
