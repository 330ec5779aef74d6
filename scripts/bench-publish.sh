#!/usr/bin/env bash
# Refreshes while the catalog grows: `reco serve` (pinned to SERVER_CPUS) under a closed-loop
# refresh load (reco-load, pinned to TOOL_CPUS), measured twice in the same run on the same
# server: idle (no publishing), then while `reco import --addr` publishes ARTICLES new articles
# through Catalog.Publish in batches of BATCH. Prints both reco-load lines and the p99 ratio.
#
# usage: scripts/bench-publish.sh [RESULTS_DIR]   (default: target/bench/publish-<UTC timestamp>)
#
# environment (all optional):
#   ARTICLES=100000  BATCH=1000  CONCURRENCY=16  ARTICLE_NUM=10  USERS=100000
#   DURATION=6 (measured seconds of each phase; the import starts as the measured window does
#   (after the 2 s warm-up) and should fill most of it: the script says when it outlasted it)
#   SERVER_CPUS=0  TOOL_CPUS=1  PORT=18899
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RES=${1:-$ROOT/target/bench/publish-$(date -u +%Y%m%dT%H%M%SZ)}
ARTICLES=${ARTICLES:-100000}
BATCH=${BATCH:-1000}
CONCURRENCY=${CONCURRENCY:-16}
ARTICLE_NUM=${ARTICLE_NUM:-10}
USERS=${USERS:-100000}
DURATION=${DURATION:-6}
SERVER_CPUS=${SERVER_CPUS:-0}
TOOL_CPUS=${TOOL_CPUS:-1}
PORT=${PORT:-18899}
TOKEN=bench-publish-admin-token-0123456789
mkdir -p "$RES"
RES=$(cd "$RES" && pwd)
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$RES/log.txt"; }

log "== cargo build --release -p reco -p reco-load"
(cd "$ROOT" && cargo build --release -p reco -p reco-load 2>&1 | tail -1 | tee -a "$RES/log.txt")
RECO=$ROOT/target/release/reco
LOAD=$ROOT/target/release/reco-load

WORK=$(mktemp -d "${TMPDIR:-/tmp}/reco-bench-publish.XXXXXX")
SERVER_PID=
IMPORT_PID=
cleanup() {
  for pid in $IMPORT_PID $SERVER_PID; do
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ARTICLES new articles as JSON Lines: ids after the demo catalog's, published in the last hour,
# titles and keywords from a few topics (each title distinct).
python3 - "$ARTICLES" > "$WORK/articles.jsonl" <<'EOF'
import json, sys, time
n = int(sys.argv[1])
now = int(time.time() * 1000)
topics = [(18, "Python", "异步编程"), (13, "大模型", "推荐系统"), (7, "数据库", "索引"), (9, "Go", "并发"),
          (19, "Java", "虚拟线程"), (22, "芯片", "云计算"), (17, "前端", "Vite"), (11, "微服务", "消息队列")]
for i in range(n):
    channel, a, b = topics[i % len(topics)]
    print(json.dumps({"id": 1_000_000 + i, "channel_id": channel, "title": f"{a}与{b}实战第{i}篇",
                      "author": "编辑部", "publish_time": now - 3_600_000 + i * 3_600_000 // n,
                      "keywords": [a, b], "summary": f"关于{a}和{b}的第{i}篇文章。"}, ensure_ascii=False))
EOF
log "$(wc -l < "$WORK/articles.jsonl") articles to publish"

taskset -c "$SERVER_CPUS" "$RECO" serve --addr "127.0.0.1:$PORT" --data-dir "$WORK/data" --admin-token "$TOKEN" \
  >> "$RES/reco-server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "bench-publish.sh: reco serve died (see $RES/reco-server.log)" >&2; exit 1; }
  sleep 0.1
done

load() {  # seconds user-prefix
  taskset -c "$TOOL_CPUS" "$LOAD" --addr "http://127.0.0.1:$PORT" --concurrency "$CONCURRENCY" \
    --article-num "$ARTICLE_NUM" --users "$USERS" --user-prefix "$2" --duration "$1" --warmup 2 \
    --server-pid "$SERVER_PID"
}

log "== idle"
IDLE=$(load "$DURATION" idle-)
log "idle: $IDLE"

log "== publishing $ARTICLES articles in batches of $BATCH while refreshing"
LOADED=$WORK/publishing.txt
load "$DURATION" busy- > "$LOADED" &
LOAD_PID=$!
sleep 2
START=$(date +%s.%N)
taskset -c "$TOOL_CPUS" "$RECO" import "$WORK/articles.jsonl" --addr "http://127.0.0.1:$PORT" --token "$TOKEN" \
  --batch "$BATCH" > "$RES/import.log" 2>&1 &
IMPORT_PID=$!
wait "$IMPORT_PID"
IMPORT_PID=
END=$(date +%s.%N)
kill -0 "$LOAD_PID" 2>/dev/null || log "WARNING: the import outlasted the measured window: raise DURATION"
wait "$LOAD_PID"
BUSY=$(cat "$LOADED")
log "publishing: $BUSY"
SECS=$(echo "$END - $START" | bc)
log "import: $(tail -1 "$RES/import.log") in ${SECS} s"

p99() { sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<< "$1"; }
rps() { sed -n 's/^rps=\([0-9.]*\).*/\1/p' <<< "$1"; }
log "p99 idle $(p99 "$IDLE") ms, while publishing $(p99 "$BUSY") ms: ratio $(echo "scale=2; $(p99 "$BUSY") / $(p99 "$IDLE")" | bc)x;" \
  "rps $(rps "$IDLE") -> $(rps "$BUSY")"
