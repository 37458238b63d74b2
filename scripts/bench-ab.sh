#!/usr/bin/env bash
# A/B of the engine scenarios between an earlier commit (old, default: the previous main) and the
# working tree (new), on this machine: release builds of both, then alternating rounds of
# scripts/bench-engine.py (old, new, old, new, new, old), reported by scripts/bench-ab.py into the
# bench:ab section of BENCHMARKS.md. Env: OLD (commit), DURATION (10s), CONNECTIONS (200).
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${OLD:-$(git rev-parse --short HEAD~1)}
NEW=$(git rev-parse --short HEAD)$(git diff --quiet || echo "+changes")
scripts/install-deps.sh --bench
scripts/python-env.sh
work=$(mktemp -d /tmp/flowstack-ab.XXXXXX)
git worktree add -f "$work/old" "$OLD" >/dev/null
(cd "$work/old" && swift build -c release --product flowstack && swift build -c release --product flowstack-sandbox)
swift build -c release --product flowstack
swift build -c release --product flowstack-sandbox
mkdir -p "$work/bin/old" "$work/bin/new"
cp "$work/old/.build/release/flowstack" "$work/old/.build/release/flowstack-sandbox" "$work/bin/old/"
cp .build/release/flowstack .build/release/flowstack-sandbox "$work/bin/new/"
source scripts/postgres.sh
pg_start
cleanup() { pg_stop; git worktree remove --force "$work/old" 2>/dev/null || true; }
trap cleanup EXIT
log="$work/rounds.log"
round=0
for side in old new old new new old; do
  round=$((round + 1))
  echo "=== round $round $side" | tee -a "$log"
  FLOWSTACK_BIN="$work/bin/$side/flowstack" DURATION=${DURATION:-10s} RUNS=1 CONNECTIONS=${CONNECTIONS:-200} \
    .venv-test/bin/python scripts/bench-engine.py | grep -E " c=[0-9]+: |^per-step |^flowstack 3-step" | tee -a "$log"
done
python3 scripts/bench-ab.py "$log" --old "$OLD" --new "$NEW"
