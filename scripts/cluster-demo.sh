#!/usr/bin/env bash
# Scale-out demo: a local 3-node Redis Cluster and 3 `reco serve` replicas on it, on
# consecutive ports, all on loopback. Builds the page and the server first (like demo.sh) and
# installs Debian's redis-server when it is missing (as root). Ctrl-C stops everything this
# script started, and nothing else.
#
#   scripts/cluster-demo.sh            Redis on 7101-7103, replicas on 8881-8883
#   REDIS_PORT=7201 RECO_PORT=9001 scripts/cluster-demo.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REDIS_PORT=${REDIS_PORT:-7101}
RECO_PORT=${RECO_PORT:-8881}
NODES=3

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: redis-server is missing: apt-get install redis-server (or run this as root)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
scripts/build-web.sh
cargo build --release --locked -p reco

WORK=$(mktemp -d "${TMPDIR:-/tmp}/reco-cluster.XXXXXX")
PIDS=()
stop_all() {
    trap - INT TERM EXIT
    echo "==> stopping the replicas and the Redis nodes this script started" >&2
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap stop_all INT TERM EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for i in $(seq 0 $((NODES - 1))); do
    for p in $((REDIS_PORT + i)) $((RECO_PORT + i)); do
        port_free "$p" || { echo "error: port $p is in use (set REDIS_PORT / RECO_PORT)" >&2; exit 1; }
    done
done

seeds=()
for i in $(seq 0 $((NODES - 1))); do
    port=$((REDIS_PORT + i))
    mkdir -p "$WORK/redis-$port"
    # Every write is fsynced before Redis answers: an acknowledged event survives a crash.
    redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis-$port" --save "" \
        --appendonly yes --appendfsync always \
        --cluster-enabled yes --cluster-config-file "$WORK/redis-$port/nodes.conf" \
        --logfile "$WORK/redis-$port/redis.log" &
    PIDS+=($!)
    seeds+=("127.0.0.1:$port")
done
for s in "${seeds[@]}"; do
    for _ in $(seq 100); do redis-cli -p "${s##*:}" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >"$WORK/cluster-create.log"
for s in "${seeds[@]}"; do
    for _ in $(seq 100); do
        redis-cli -p "${s##*:}" cluster info | grep -q '^cluster_state:ok' && break
        sleep 0.1
    done
done
STORE="redis+cluster://$(IFS=,; echo "${seeds[*]}")"
echo "==> Redis Cluster up: $STORE" >&2

for i in $(seq 0 $((NODES - 1))); do
    port=$((RECO_PORT + i))
    target/release/reco serve --store "$STORE" --addr "127.0.0.1:$port" --web-dir dist \
        > >(sed "s/^/[replica $port] /" >&2) 2>&1 &
    PIDS+=($!)
done
for i in $(seq 0 $((NODES - 1))); do
    port=$((RECO_PORT + i))
    for _ in $(seq 300); do ! port_free "$port" && break; sleep 0.1; done
    echo "==> replica $((i + 1)): http://127.0.0.1:$port/" >&2
done
echo "==> the replicas share users, events and learning; Ctrl-C stops everything" >&2
wait -n "${PIDS[@]}" || true
echo "==> a process exited by itself; stopping the rest" >&2
