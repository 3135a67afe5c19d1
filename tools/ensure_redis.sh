#!/usr/bin/env bash
# Make sure a Redis server responds on 127.0.0.1:6379, which the tests use for the shared
# (multi-replica) paths. Starts the machine's redis-server there, without persistence,
# when nothing responds. Fails with the install command when redis-server is missing.
set -euo pipefail

ping_redis() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if command -v redis-cli >/dev/null && ping_redis; then
  exit 0
fi
if ! command -v redis-server >/dev/null; then
  echo "ensure_redis: redis-server is not installed: run 'apt-get install redis-server'" >&2
  exit 1
fi

echo "ensure_redis: starting redis-server on 127.0.0.1:6379" >&2
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
for _ in $(seq 50); do
  ping_redis && exit 0
  sleep 0.1
done
echo "ensure_redis: redis-server did not respond on 127.0.0.1:6379 within 5 s" >&2
exit 1
