#!/usr/bin/env bash
# Benchmark: what the request-rate limits cost on the hot path. API-key-authenticated
# GET /api/v1/me over TLS 1.3 with keep-alive on SQLite (as scripts/bench.sh), once with the rate
# and connection limits off (0) and once with every limit on but set so high that nothing is
# refused (each request then takes a token from its address's, key's and organization's bucket).
# The connection guard (header, body and idle deadlines) runs in both. Prints one line per run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
RUNS=${RUNS:-3}
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}

scripts/install-deps.sh --bench
swift build -c release --product flowstack
BIN=$PWD/.build/release/flowstack
work=$(mktemp -d /tmp/flowstack-bench-edge.XXXXXX)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cat > "$work/auth.lua" <<'LUA'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("FLOWSTACK_BENCH_KEY")
LUA

limits() {
  local value=$1
  for name in RATE_API RATE_KEY RATE_ORG RATE_WEBHOOK RATE_WEBHOOK_ADDRESS; do
    printf 'FLOWSTACK_%s_PER_SECOND=%s FLOWSTACK_%s_BURST=%s ' "$name" "$value" "$name" "$value"
  done
  printf 'FLOWSTACK_HANDSHAKES_PER_SECOND=%s FLOWSTACK_HANDSHAKE_BURST=%s FLOWSTACK_CONNECTIONS_PER_ADDRESS=%s' "$value" "$value" "${value%%.*}"
}

for mode in off on; do
  data="$work/$mode"
  port=$(free_port)
  value=0
  [ "$mode" = on ] && value=1000000000
  # shellcheck disable=SC2046
  env $(limits "$value") "$BIN" serve --data-dir "$data" --port "$port" --log-level warning > "$work/$mode.log" 2>&1 &
  server_pid=$!
  bench_read_key "$port" "$data" "$work"
  wrk -t2 -c"$CONNECTIONS" -d5s -s "$work/auth.lua" "https://localhost:$port/api/v1/me" > /dev/null
  for run in $(seq "$RUNS"); do
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/auth.lua" "https://localhost:$port/api/v1/me" > "$work/$mode-$run.txt"
    echo "limits $mode run $run: $(python3 scripts/wrk-parse.py "$work/$mode-$run.txt")   (requests/s p50 p99 errors)"
  done
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
done
