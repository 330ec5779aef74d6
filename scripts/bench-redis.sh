#!/usr/bin/env bash
# Refresh load on each store, same run: redb, one Redis, a 3-node Redis Cluster, and two
# replicas on the cluster (each with half the connections). Every reco serve is pinned to
# SERVER_CPUS; Redis and reco-load share TOOL_CPUS. Prints one reco-load line per cell and,
# for the one-replica cells, the store's round trips per refresh (from /metrics).
#
#   scripts/bench-redis.sh                    DURATION=8 CONC=16 ARTICLE_NUM=10 USERS=100000
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${DURATION:-8}
CONC=${CONC:-16}
ARTICLE_NUM=${ARTICLE_NUM:-10}
USERS=${USERS:-100000}
SERVER_CPUS=${SERVER_CPUS:-0}
TOOL_CPUS=${TOOL_CPUS:-1}
cargo build --release --locked -p reco -p reco-load 2>&1 | tail -1
RECO=$ROOT/target/release/reco
LOAD=$ROOT/target/release/reco-load

WORK=$(mktemp -d "${TMPDIR:-/tmp}/reco-bench-redis.XXXXXX")
PIDS=()
stop() { for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done; for pid in "$@"; do wait "$pid" 2>/dev/null || true; done; }
cleanup() { stop "${PIDS[@]}"; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

redis_node() {  # port [cluster]
    mkdir -p "$WORK/r$1"
    local extra=()
    [[ ${2:-} == cluster ]] && extra=(--cluster-enabled yes --cluster-config-file "$WORK/r$1/nodes.conf")
    taskset -c "$TOOL_CPUS" redis-server --port "$1" --bind 127.0.0.1 --dir "$WORK/r$1" --save "" \
        --appendonly yes --appendfsync always --logfile "$WORK/r$1/log" "${extra[@]}" &
    PIDS+=($!)
    wait_port "$1"
}

serve() {  # port store-args... ; echoes the pid
    local port=$1; shift
    taskset -c "$SERVER_CPUS" "$RECO" serve --addr "127.0.0.1:$port" "$@" >"$WORK/serve-$port.log" 2>&1 &
    echo $!
}

# The store's round trips and the refreshes answered so far, from the server's /metrics.
counts() {  # port
    curl -sf "http://127.0.0.1:$1/metrics" | awk '
        /^reco_store_round_trips_total / { trips = $2 }
        /^reco_rpc_requests_total\{.*user_recommend/ { asked += $2 }
        END { printf "%d %d\n", trips, asked }'
}

# Round trips per refresh over a load run, less what the server sends on its own meanwhile (the
# learner and the catalog follower poll the shared log), measured idle just before it.
trips() {  # label port pid prefix
    local t0 r0 t1 r1 t2 r2 idle_from load_from
    idle_from=$(date +%s%N); read -r t0 r0 < <(counts "$2"); sleep 2
    load_from=$(date +%s%N); read -r t1 r1 < <(counts "$2")
    load "$1" "$CONC" "$2" "$3" "$4"
    read -r t2 r2 < <(counts "$2")
    awk -v label="$1" -v idle=$((t1 - t0)) -v idle_ns=$((load_from - idle_from)) -v trips=$((t2 - t1)) \
        -v refreshes=$((r2 - r1)) -v load_ns=$(($(date +%s%N) - load_from)) 'BEGIN {
            background = idle / idle_ns * load_ns
            printf "%s round_trips=%d refreshes=%d background_est=%.0f round_trips_per_refresh=%.3f\n",
                label, trips, refreshes, background, (trips - background) / refreshes }'
}

load() {  # label conc port pid prefix
    taskset -c "$TOOL_CPUS" "$LOAD" --addr "http://127.0.0.1:$3" --concurrency "$2" --article-num "$ARTICLE_NUM" \
        --users "$USERS" --user-prefix "$5" --duration "$DURATION" --warmup 2 --server-pid "$4" | sed "s/^/$1 /"
}

# redb
port=$(free_port); pid=$(serve "$port" --data-dir "$WORK/redb"); wait_port "$port"
trips redb "$port" "$pid" redb-; stop "$pid"

# one Redis
rport=$(free_port); redis_node "$rport"
port=$(free_port); pid=$(serve "$port" --store "redis://127.0.0.1:$rport/0"); wait_port "$port"
trips redis "$port" "$pid" redis-; stop "$pid"

# a 3-node cluster: one replica, then two
seeds=()
for _ in 1 2 3; do
    while :; do p=$(free_port); ((p < 55000)) && break; done
    redis_node "$p" cluster; seeds+=("127.0.0.1:$p")
done
redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
for s in "${seeds[@]}"; do
    for _ in $(seq 100); do redis-cli -p "${s##*:}" cluster info | grep -q cluster_state:ok && break; sleep 0.1; done
done
store="redis+cluster://$(IFS=,; echo "${seeds[*]}")"
port=$(free_port); pid=$(serve "$port" --store "$store"); wait_port "$port"
trips cluster-1-replica "$port" "$pid" c1-
port2=$(free_port); pid2=$(serve "$port2" --store "$store"); wait_port "$port2"
half=$((CONC / 2))
load cluster-2-replicas-a "$half" "$port" "$pid" c2a- &
a=$!
load cluster-2-replicas-b "$half" "$port2" "$pid2" c2b-
wait "$a"
stop "$pid" "$pid2"
