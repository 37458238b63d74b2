#!/usr/bin/env bash
# The soak benchmark (scripts/soak.py; not run in CI). Builds nothing: the binary is
# $FLOWSTACK_BIN or .build/release/flowstack, with flowstack-sandbox next to it.
#   scripts/soak.sh --minutes 30          # steady mixed load on SQLite and PostgreSQL
#   scripts/soak.sh --queued 100000       # RSS while 100,000 executions are submitted
set -euo pipefail
cd "$(dirname "$0")/.."
export FLOWSTACK_BIN="${FLOWSTACK_BIN:-$PWD/.build/release/flowstack}"
python=.venv-test/bin/python
[ -x "$python" ] || python=python3
exec "$python" scripts/soak.py "$@"
