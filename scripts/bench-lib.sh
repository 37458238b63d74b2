# Shared by the wrk benchmarks: wait for a fresh server, create its owner and a read API key.
#   bench_read_key PORT DATA_DIR WORK_DIR   -> exports FLOWSTACK_BENCH_KEY
bench_read_key() {
  local port=$1 data=$2 work=$3
  for _ in $(seq 100); do [ -f "$data/setup-token" ] && curl -sf --cacert "$data/tls/server.crt" "https://localhost:$port/healthz" >/dev/null && break; sleep 0.2; done
  curl_() { curl -sf --cacert "$data/tls/server.crt" "$@"; }
  local token org csrf
  token=$(cat "$data/setup-token")
  org=$(curl_ "https://localhost:$port/api/v1/setup" -H 'Content-Type: application/json' \
    -d "{\"token\":\"$token\",\"email\":\"bench@example.com\",\"password\":\"Bench-Passw0rd\",\"name\":\"B\",\"organization\":\"B\"}" \
    | python3 -c 'import sys,json; print(json.load(sys.stdin)["organization"]["id"])')
  csrf=$(curl_ -c "$work/jar" "https://localhost:$port/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d '{"email":"bench@example.com","password":"Bench-Passw0rd"}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["csrfToken"])')
  FLOWSTACK_BENCH_KEY=$(curl_ -b "$work/jar" -H "X-CSRF-Token: $csrf" -H 'Content-Type: application/json' \
    "https://localhost:$port/api/v1/orgs/$org/api-keys" -d '{"name":"bench","scope":"read"}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["key"])')
  export FLOWSTACK_BENCH_KEY
}
