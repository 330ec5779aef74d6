#!/usr/bin/env bash
# Side-by-side load benchmark of /UserRecommend/user_recommend: the seed's Python reference
# server (fake data), `reco serve` (real engine, embedded store) and the same-bytes baseline (a
# do-nothing tonic server answering every call with one real reco answer recorded at the start:
# crates/reco-load/examples/same_bytes.rs), measured in the same run, each pinned to the same
# core, by the same load generator (reco-load) pinned to the other core. No compression: reco-load
# neither sends nor accepts compressed messages, so every server answers plain.
#
# usage: scripts/bench.sh [RESULTS_DIR]     (default: target/bench/<UTC timestamp>)
#
# First, once: start reco on a fresh data dir, record its answer to a refresh of a new user in
# 推荐 and to the history read of that batch (10 and 100 articles) into answers.bin, stop it.
# Per repeat: start the reference (taskset -c SERVER_CPUS), run the matrix, stop it (by PID);
# the same-bytes baseline the same way (reco-load --checks basic: its answers are the same
# whoever asks); reco on a fresh temp data dir, run the matrix, stop it. Every request of
# the matrix is a refresh for one of USERS distinct users (reco ranks, filters, mints signed
# tracking params and stores the batch). Medians over the repeats go into a markdown table.
# Then, against reco: reco-load in history mode (and against the same-bytes baseline replaying
# the recorded history reads), reco-load refreshes over gRPC-Web (HTTP/1.1), and one h2load run (../shared/bench/grpc_load.sh) as a third-party cross-check (identical
# requests: after the first, those are history reads).
#
# environment (all optional):
#   MATRIX="16:10 16:100 64:10 64:100"  concurrency:article_num cells
#   REPEAT=3  DURATION=10  WARMUP=2     repeats; measured and warm-up seconds per cell
#   USERS=100000                         distinct users per cell (each cell uses its own ids)
#   SERVER_CPUS=0  TOOL_CPUS=1           taskset CPU lists of the server and of reco-load
#   REF_PORT=18897  RECO_PORT=18898  SAME_PORT=18899   loopback ports
#   IDLE_PCT=25  IDLE_WAIT=120           before each cell wait (at most IDLE_WAIT s over the whole
#                                        run) until no core is busier than IDLE_PCT %; recorded
#   H2LOAD=1                             0 = skip the h2load cross-check
#   BASELINE=<git rev>                   also build that revision of reco (git archive into a temp
#                                        dir, target/bench-baseline) and run the matrix against it
#                                        in every repeat (the two builds take turns going first):
#                                        same-run reco/baseline ratios in the summary
#   BASELINE_BIN=<path>                  use this already-built `reco` binary as the baseline instead
#                                        of building BASELINE (which then only names it)
#   VENV=/tmp/seed-venv                  Python venv with grpcio (made by ../shared/bench/setup.sh)
#   BENCH_DIR=<repo>/../shared/bench     where the reference server and h2load scripts live
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/../shared/bench}
if [[ ! -f $BENCH_DIR/seed_py/server.py || ! -x $BENCH_DIR/grpc_load.sh ]]; then
  echo "bench.sh: $BENCH_DIR is missing (expected ../shared/bench next to the repo, with seed_py/server.py" \
    "and grpc_load.sh): the reference server and the h2load scripts come from there; set BENCH_DIR" >&2
  exit 2
fi
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
RES=${1:-$ROOT/target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
MATRIX=${MATRIX:-"16:10 16:100 64:10 64:100"}
REPEAT=${REPEAT:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
USERS=${USERS:-100000}
SERVER_CPUS=${SERVER_CPUS:-0}
TOOL_CPUS=${TOOL_CPUS:-1}
REF_PORT=${REF_PORT:-18897}
RECO_PORT=${RECO_PORT:-18898}
SAME_PORT=${SAME_PORT:-18899}
IDLE_PCT=${IDLE_PCT:-25}
IDLE_WAIT=${IDLE_WAIT:-120}
H2LOAD=${H2LOAD:-1}
BASELINE=${BASELINE:-}
VENV=${VENV:-/tmp/seed-venv}
PY=$VENV/bin/python

mkdir -p "$RES"
RES=$(cd "$RES" && pwd)
RUNS=$RES/runs.txt
: > "$RUNS"
log() { echo "$*" | tee -a "$RES/log.txt"; }

# ---------------------------------------------------------------- tools
have_tools() {
  command -v h2load >/dev/null && command -v taskset >/dev/null && [[ -x $PY ]] \
    && "$PY" -c 'import grpc, grpc_tools' 2>/dev/null
}
if ! have_tools; then
  log "== installing what is missing with $BENCH_DIR/setup.sh (apt: nghttp2-client wrk util-linux; venv $VENV)"
  VENV=$VENV "$BENCH_DIR/setup.sh" 2>&1 | tee -a "$RES/log.txt"
  have_tools || { echo "bench.sh: setup.sh did not provide h2load, taskset and $PY with grpcio" >&2; exit 2; }
fi

log "== cargo build --release -p reco -p reco-load --bins --example same_bytes"
(cd "$ROOT" && cargo build --release -p reco -p reco-load --bins --example same_bytes 2>&1 | tail -3 \
  | tee -a "$RES/log.txt")
RECO=$ROOT/target/release/reco
LOAD=$ROOT/target/release/reco-load
SAME=$ROOT/target/release/examples/same_bytes
BASE_RECO=
BASELINE_BIN=${BASELINE_BIN:-}
if [[ -n $BASELINE_BIN ]]; then
  BASELINE=${BASELINE:-$BASELINE_BIN}
  BASE_RECO=$BASELINE_BIN
  [[ -x $BASE_RECO ]] || { echo "bench.sh: BASELINE_BIN=$BASE_RECO is not executable" >&2; exit 1; }
elif [[ -n $BASELINE ]]; then
  BASE_SRC=$(mktemp -d "${TMPDIR:-/tmp}/reco-baseline.XXXXXX")
  log "== baseline $BASELINE: git archive into $BASE_SRC; cargo build --release -p reco (target/bench-baseline)"
  git -C "$ROOT" archive "$BASELINE" | tar -x -C "$BASE_SRC"
  (cd "$BASE_SRC" && CARGO_TARGET_DIR=$ROOT/target/bench-baseline cargo build --release -p reco 2>&1 | tail -3 \
    | tee -a "$RES/log.txt")
  rm -rf "$BASE_SRC"
  BASE_RECO=$ROOT/target/bench-baseline/release/reco
  [[ -x $BASE_RECO ]] || { echo "bench.sh: the baseline build did not produce $BASE_RECO" >&2; exit 1; }
fi

# The reference runs from a private copy of seed_py with freshly generated stubs.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/reco-bench.XXXXXX")
cp -r "$BENCH_DIR/seed_py" "$WORK/seed_py"
chmod -R u+w "$WORK/seed_py"
(cd "$WORK/seed_py" && "$PY" -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. reco.proto)

# ---------------------------------------------------------------- processes we start
SERVER_PID=
DATA_DIR=
stop_server() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      log "server pid $SERVER_PID ignored SIGTERM for 10 s: SIGKILL"
      kill -KILL "$SERVER_PID"
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
  if [[ -n $DATA_DIR ]]; then rm -rf "$DATA_DIR"; DATA_DIR=; fi
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {  # port pid
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

start_ref() {
  port_free "$REF_PORT" || { echo "bench.sh: port $REF_PORT is in use" >&2; exit 1; }
  (cd "$WORK/seed_py" && exec taskset -c "$SERVER_CPUS" "$PY" server.py --host 127.0.0.1 --port "$REF_PORT") \
    >> "$RES/ref-server.log" 2>&1 &
  SERVER_PID=$!
  wait_port "$REF_PORT" "$SERVER_PID" || { echo "bench.sh: the reference server did not start" >&2; exit 1; }
}

start_reco() {  # [binary]
  local bin=${1:-$RECO}
  port_free "$RECO_PORT" || { echo "bench.sh: port $RECO_PORT is in use" >&2; exit 1; }
  DATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/reco-bench-data.XXXXXX")
  taskset -c "$SERVER_CPUS" "$bin" serve --addr "127.0.0.1:$RECO_PORT" --data-dir "$DATA_DIR" \
    >> "$RES/reco-server.log" 2>&1 &
  SERVER_PID=$!
  wait_port "$RECO_PORT" "$SERVER_PID" || { echo "bench.sh: reco serve did not start (see $RES/reco-server.log)" >&2; exit 1; }
}

start_same() {  # [--history]: the same-bytes baseline replaying $RES/answers.bin
  port_free "$SAME_PORT" || { echo "bench.sh: port $SAME_PORT is in use" >&2; exit 1; }
  taskset -c "$SERVER_CPUS" "$SAME" --load "$RES/answers.bin" --addr "127.0.0.1:$SAME_PORT" "$@" \
    >> "$RES/same-server.log" 2>&1 &
  SERVER_PID=$!
  wait_port "$SAME_PORT" "$SERVER_PID" || { echo "bench.sh: same_bytes did not start (see $RES/same-server.log)" >&2; exit 1; }
}

# ---------------------------------------------------------------- idle check
busiest_core() {  # busiest core's busy % over one second, as "PCT cpu0=.. cpu1=.."
  local a b
  a=$(grep '^cpu[0-9]' /proc/stat); sleep 1; b=$(grep '^cpu[0-9]' /proc/stat)
  paste <(echo "$a") <(echo "$b") | awk '{
      n = (NF - 2) / 2; name = $1; t1 = 0; t2 = 0
      for (i = 2; i <= n + 1; i++) t1 += $i
      for (i = n + 3; i <= NF; i++) t2 += $i
      idle1 = $5 + $6; idle2 = $(n + 6) + $(n + 7)
      busy = (t2 - t1) > 0 ? 100 * (1 - (idle2 - idle1) / (t2 - t1)) : 0
      if (busy > max) max = busy
      s = s sprintf(" %s=%.0f", name, busy)
    } END { printf "%.0f%s\n", max, s }'
}
IDLE_DEADLINE=$(( $(date +%s) + IDLE_WAIT ))
IDLE_NOTE=
wait_idle() {
  local b
  while :; do
    b=$(busiest_core)
    if (( ${b%% *} <= IDLE_PCT )); then IDLE_NOTE="idle_before=${b%% *}"; return 0; fi
    if (( $(date +%s) >= IDLE_DEADLINE )); then IDLE_NOTE="idle_before=${b%% *}(busy)"; return 0; fi
    echo "   machine busy ($b): waiting" >&2
    sleep 4
  done
}

# ---------------------------------------------------------------- runs
cell() {  # server rep conc anum port checks
  local server=$1 rep=$2 conc=$3 anum=$4 port=$5 checks=$6 out
  wait_idle
  out=$(taskset -c "$TOOL_CPUS" "$LOAD" --addr "http://127.0.0.1:$port" --concurrency "$conc" \
    --article-num "$anum" --duration "$DURATION" --warmup "$WARMUP" --users "$USERS" \
    --user-prefix "r$rep-c$conc-a$anum-" --mode refresh --checks "$checks" --server-pid "$SERVER_PID" \
    2>>"$RES/load-stderr.txt" | tail -1) || true
  log "server=$server rep=$rep $out $IDLE_NOTE"
  echo "server=$server rep=$rep $out $IDLE_NOTE" >> "$RUNS"
}

warm() {  # port checks: an unrecorded run so the first cell does not pay for cold caches
  taskset -c "$TOOL_CPUS" "$LOAD" --addr "http://127.0.0.1:$1" --concurrency 16 --article-num 10 \
    --duration 3 --warmup 0 --users 10000 --user-prefix warm- --checks "$2" >/dev/null 2>&1 || true
}

{
  echo "# bench.sh $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "host: $(uname -srm); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "reco: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$ROOT" && git diff --quiet HEAD 2>/dev/null || echo '+dirty'); $(rustc --version)"
  echo "reference: $BENCH_DIR/seed_py/server.py; python $("$PY" -c 'import sys, grpc, google.protobuf as p; print(sys.version.split()[0], "grpcio", grpc.__version__, "protobuf", p.__version__)')"
  echo "h2load: $(h2load --version | head -1)"
  if [[ -n $BASELINE ]]; then echo "baseline: $(git -C "$ROOT" rev-parse --short "$BASELINE" 2>/dev/null || echo "$BASELINE")${BASELINE_BIN:+ (binary $BASELINE_BIN)}"; fi
  echo "server pinned to cpu $SERVER_CPUS, reco-load pinned to cpu $TOOL_CPUS; matrix $MATRIX; repeat $REPEAT;" \
    "${DURATION}s measured + ${WARMUP}s warm-up per cell; $USERS users per cell; refresh mode"
} | tee "$RES/conditions.txt"

log "== recording reco's answers for the same-bytes baseline (10 and 100 articles, refresh and history read)"
start_reco
"$SAME" --from "http://127.0.0.1:$RECO_PORT" --save "$RES/answers.bin" 2>&1 | tee -a "$RES/log.txt"
stop_server

for rep in $(seq "$REPEAT"); do
  log "== repeat $rep/$REPEAT: reference (seed_py/server.py) on 127.0.0.1:$REF_PORT"
  start_ref
  warm "$REF_PORT" basic
  for m in $MATRIX; do cell ref "$rep" "${m%%:*}" "${m##*:}" "$REF_PORT" basic; done
  stop_server

  log "== repeat $rep/$REPEAT: same-bytes baseline (recorded reco answers) on 127.0.0.1:$SAME_PORT"
  start_same
  warm "$SAME_PORT" basic
  for m in $MATRIX; do cell same "$rep" "${m%%:*}" "${m##*:}" "$SAME_PORT" basic; done
  stop_server

  run_reco() {
    log "== repeat $rep/$REPEAT: reco serve on 127.0.0.1:$RECO_PORT (fresh data dir)"
    start_reco
    warm "$RECO_PORT" full
    for m in $MATRIX; do cell reco "$rep" "${m%%:*}" "${m##*:}" "$RECO_PORT" full; done
  }
  # The two builds take turns going first (a machine's speed drifts over minutes); the last
  # repeat ends with this build, which stays up for the cross-checks below.
  if [[ -n $BASE_RECO && $(( (REPEAT - rep) % 2 )) == 1 ]]; then
    run_reco
    stop_server
  fi
  if [[ -n $BASE_RECO ]]; then
    log "== repeat $rep/$REPEAT: baseline reco ($BASELINE) on 127.0.0.1:$RECO_PORT (fresh data dir)"
    start_reco "$BASE_RECO"
    warm "$RECO_PORT" full
    for m in $MATRIX; do cell base "$rep" "${m%%:*}" "${m##*:}" "$RECO_PORT" full; done
    stop_server
  fi
  if [[ -z $BASE_RECO || $(( (REPEAT - rep) % 2 )) == 0 ]]; then
    run_reco
    if (( rep < REPEAT )); then stop_server; fi
  fi
done

# reco is still running (last repeat): cross-checks at conc 16, article_num 10.
extra() {  # name, then reco-load arguments (EXTRA_PORT: the server's port, reco's by default)
  local name=$1 out
  shift
  wait_idle
  out=$(taskset -c "$TOOL_CPUS" "$LOAD" --addr "http://127.0.0.1:${EXTRA_PORT:-$RECO_PORT}" --concurrency 16 --article-num 10 \
    --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PID" "$@" 2>>"$RES/load-stderr.txt" | tail -1) || true
  log "server=$name $out $IDLE_NOTE"
  echo "server=$name $out $IDLE_NOTE" >> "$RUNS"
}
log "== reco-load cross-checks against reco, conc 16, article_num 10: history reads; refreshes over gRPC-Web"
extra reco-history --users 10000 --user-prefix hist- --mode history
extra reco-grpc-web-refresh --users "$USERS" --user-prefix web- --mode refresh --proto grpc-web

if [[ $H2LOAD == 1 ]]; then
  log "== h2load cross-check against reco: grpc_load.sh conc 16, article_num 10, ${DURATION}s (SKIP_CHECK=1)"
  wait_idle
  # Identical requests: the first is a refresh, the rest read that batch back, so the response
  # size check (made for the seed's fixed-size fake answer) reports a mismatch; errors= counts
  # h2load's failed/non-2xx requests.
  SKIP_CHECK=1 DURATION=$DURATION WARMUP=$WARMUP TOOL_CPUS=$TOOL_CPUS SERVER_PID=$SERVER_PID \
    "$BENCH_DIR/grpc_load.sh" "127.0.0.1:$RECO_PORT" 16 0 10 > "$RES/h2load.txt" 2>&1 || true
  sed 's/^/   /' "$RES/h2load.txt" | tee -a "$RES/log.txt"
  echo "server=reco-h2load $(tail -1 "$RES/h2load.txt")" >> "$RUNS"
fi
stop_server
log "== history reads against the same-bytes baseline (the recorded history read), conc 16, article_num 10"
start_same --history
EXTRA_PORT=$SAME_PORT extra same-history --users 10000 --user-prefix hist- --mode history --checks basic
stop_server

# ---------------------------------------------------------------- summary
python3 - "$RUNS" "$DURATION" > "$RES/summary.md" <<'EOF'
import re, statistics, sys
runs, duration = sys.argv[1], sys.argv[2]
cells = {}
extra = []
for line in open(runs):
    kv = dict(re.findall(r'(\w+)=(\S+)', line))
    if kv.get('server') in ('ref', 'reco', 'base', 'same') and 'rps' in kv:
        cells.setdefault((int(kv['conc']), int(kv['article_num'])), {}).setdefault(kv['server'], []).append(kv)
    elif kv.get('server', '').startswith(('reco-', 'same-')):
        extra.append(kv)

def med(rows, key):
    vals = [float(r[key]) for r in rows if key in r and r[key] not in ('NA', 'nan')]
    return statistics.median(vals) if vals else float('nan')

def errs(rows):
    return sum(int(r.get('errors', 0)) for r in rows)

def cpu_us(rows):  # server CPU time per answer, robust to the share of the core it got
    vals = [float(r['server_cpu_pct']) * 1e4 / float(r['rps']) for r in rows
            if r.get('server_cpu_pct', 'NA') != 'NA' and float(r.get('rps', 0)) > 0]
    return statistics.median(vals) if vals else float('nan')

print('| conc | article_num | reference rps | ref p50 ms | ref p99 ms | reco rps | reco p50 ms | reco p99 ms '
      '| reco/ref rps | ref CPU us/req | reco CPU us/req | reco short | errors ref/reco | reco-load cpu % | reco cpu % |')
print('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
ratios, p99_16 = [], []
for (conc, anum), by in sorted(cells.items()):
    ref, reco = by.get('ref', []), by.get('reco', [])
    ratio = med(reco, 'rps') / med(ref, 'rps') if ref and reco and med(ref, 'rps') > 0 else float('nan')
    ratios.append(ratio)
    if conc == 16:
        p99_16.append(med(reco, 'p99_ms'))
    print('| %d | %d | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.1fx | %.0f | %.0f | %d | %d/%d | %.0f | %.0f |' % (
        conc, anum, med(ref, 'rps'), med(ref, 'p50_ms'), med(ref, 'p99_ms'),
        med(reco, 'rps'), med(reco, 'p50_ms'), med(reco, 'p99_ms'), ratio, cpu_us(ref), cpu_us(reco),
        sum(int(r.get('short', 0)) for r in reco), errs(ref), errs(reco),
        med(reco, 'tool_cpu_pct'), med(reco, 'server_cpu_pct')))
if any('base' in by for by in cells.values()):
    print()
    print('Against the baseline build, same run:')
    print()
    print('| conc | article_num | baseline rps | base p50 ms | base p99 ms | reco rps | reco p50 ms | reco p99 ms '
          '| reco/base rps | base CPU us/req | reco CPU us/req |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for (conc, anum), by in sorted(cells.items()):
        base, reco = by.get('base', []), by.get('reco', [])
        ratio = med(reco, 'rps') / med(base, 'rps') if base and reco and med(base, 'rps') > 0 else float('nan')
        print('| %d | %d | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2fx | %.0f | %.0f |' % (
            conc, anum, med(base, 'rps'), med(base, 'p50_ms'), med(base, 'p99_ms'),
            med(reco, 'rps'), med(reco, 'p50_ms'), med(reco, 'p99_ms'), ratio, cpu_us(base), cpu_us(reco)))
if any('same' in by for by in cells.values()):
    print()
    print('Against the same-bytes baseline (a do-nothing tonic server replaying one recorded reco answer), same run:')
    print()
    print('| conc | article_num | same-bytes rps | same p99 ms | reco rps | reco p99 ms | same CPU us/req '
          '| reco CPU us/req | reco/same CPU | target | reco-load cpu % (same / reco) |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|')
    for (conc, anum), by in sorted(cells.items()):
        same, reco = by.get('same', []), by.get('reco', [])
        r = cpu_us(reco) / cpu_us(same) if same and reco else float('nan')
        goal = 1.5 if anum <= 10 else 2.0
        print('| %d | %d | %.0f | %.2f | %.0f | %.2f | %.0f | %.0f | %.2fx | <= %.1fx: %s | %.0f / %.0f |' % (
            conc, anum, med(same, 'rps'), med(same, 'p99_ms'), med(reco, 'rps'), med(reco, 'p99_ms'),
            cpu_us(same), cpu_us(reco), r, goal, 'met' if r <= goal else 'NOT met',
            med(same, 'tool_cpu_pct'), med(reco, 'tool_cpu_pct')))
hist = {kv['server']: kv for kv in extra if kv['server'] in ('reco-history', 'same-history')}
if len(hist) == 2:
    r = cpu_us([hist['reco-history']]) / cpu_us([hist['same-history']])
    print()
    print('History reads, conc 16, 10 articles: same-bytes %.0f us/req (%s rps), reco %.0f us/req (%s rps): '
          '%.2fx (target <= 1.2x: %s)' % (cpu_us([hist['same-history']]), hist['same-history']['rps'],
                                          cpu_us([hist['reco-history']]), hist['reco-history']['rps'], r,
                                          'met' if r <= 1.2 else 'NOT met'))
n = max((len(v) for by in cells.values() for v in by.values()), default=0)
print()
print('Medians of %d run(s) per cell, %s s measured each. Targets: reco >= 10x the reference rps in every cell: %s; '
      'reco p99 < 2 ms at concurrency 16: %s.' % (
          n, duration,
          'met' if ratios and all(r >= 10 for r in ratios) else 'NOT met (lowest %.1fx)' % min(ratios, default=float('nan')),
          'met' if p99_16 and all(p < 2 for p in p99_16) else 'NOT met (%s ms)' % ', '.join('%.2f' % p for p in p99_16)))
for kv in extra:
    print()
    print('%s: rps=%s p50_ms=%s p99_ms=%s errors=%s%s' % (
        kv['server'], kv.get('rps'), kv.get('p50_ms'), kv.get('p99_ms'), kv.get('errors'),
        ' verified=%s' % kv['verified'] if 'verified' in kv else ''))
EOF
echo
cat "$RES/conditions.txt"
echo
cat "$RES/summary.md"
echo "results: $RES"
