#!/usr/bin/env bash
# Benchmark: API-key-authenticated GET /api/v1/me over TLS 1.3 with keep-alive, on SQLite and on
# PostgreSQL. wrk, 64 connections, THREADS threads (default 2), 30 s per run, 3 runs per engine; medians go to
# BENCHMARKS.md. The server is the release build; wrk runs on the same 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
RUNS=${RUNS:-3}
DURATION=${DURATION:-30s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}

scripts/install-deps.sh --bench
swift build -c release --product flowstack
BIN=$PWD/.build/release/flowstack
source scripts/postgres.sh
pg_start
work=$(mktemp -d /tmp/flowstack-bench.XXXXXX)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true; pg_stop; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cat > "$work/auth.lua" <<'LUA'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("FLOWSTACK_BENCH_KEY")
LUA

results=()
for engine in sqlite postgres; do
  data="$work/$engine"
  port=$(free_port)
  db_args=()
  if [ "$engine" = postgres ]; then
    psql "$FLOWSTACK_TEST_POSTGRES_URL" -qc "CREATE DATABASE bench"
    db_args=(--database "${FLOWSTACK_TEST_POSTGRES_URL%/postgres}/bench")
  fi
  # wrk is one client at full speed: the per-client rate and connection limits are off (0).
  env FLOWSTACK_RATE_API_PER_SECOND=0 FLOWSTACK_RATE_API_BURST=0 FLOWSTACK_RATE_KEY_PER_SECOND=0 FLOWSTACK_RATE_KEY_BURST=0 \
    FLOWSTACK_RATE_ORG_PER_SECOND=0 FLOWSTACK_RATE_ORG_BURST=0 FLOWSTACK_RATE_WEBHOOK_PER_SECOND=0 FLOWSTACK_RATE_WEBHOOK_BURST=0 \
    FLOWSTACK_RATE_WEBHOOK_ADDRESS_PER_SECOND=0 FLOWSTACK_RATE_WEBHOOK_ADDRESS_BURST=0 FLOWSTACK_HANDSHAKES_PER_SECOND=0 \
    FLOWSTACK_CONNECTIONS_PER_ADDRESS=0 \
    "$BIN" serve --data-dir "$data" --port "$port" "${db_args[@]}" --log-level warning > "$work/$engine.log" 2>&1 &
  server_pid=$!
  bench_read_key "$port" "$data" "$work"
  # Warm-up, then measured runs.
  wrk -t"$THREADS" -c"$CONNECTIONS" -d5s -s "$work/auth.lua" "https://localhost:$port/api/v1/me" > /dev/null
  for run in $(seq "$RUNS"); do
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/auth.lua" "https://localhost:$port/api/v1/me" > "$work/$engine-$run.txt"
    results+=("$engine $(python3 scripts/wrk-parse.py "$work/$engine-$run.txt")")
    echo "$engine run $run: ${results[-1]}"
  done
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
done

# The engine section (scripts/bench-engine.sh) is kept as it is.
engine_section=$(python3 -c 'import sys; t = open("BENCHMARKS.md").read() if __import__("os").path.exists("BENCHMARKS.md") else ""; i = t.find("<!-- engine benchmarks"); print(t[i:] if i >= 0 else "", end="")')
printf '%s\n' "${results[@]}" | python3 scripts/bench-report.py "$DURATION" "$CONNECTIONS" "$RUNS" "$THREADS" > "$work/BENCHMARKS.md"
{ cat "$work/BENCHMARKS.md"; if [ -n "$engine_section" ]; then printf '\n%s\n' "$engine_section"; fi; } > BENCHMARKS.md
cat BENCHMARKS.md
