#!/usr/bin/env bash
# The whole test suite: installs what is missing, starts a throwaway PostgreSQL, builds, runs the
# Swift tests (every storage test on SQLite and PostgreSQL), a short fuzzing run of the expression
# language, and then the end-to-end tests against
# the real binary (TLS, plain-HTTP rejection, restart, keyring refusal, sslyze, schemathesis). The
# layout of the Swift sources is checked against .swift-format first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/python-env.sh

source scripts/postgres.sh
pg_start
trap pg_stop EXIT

status=0
# The formatter's configuration (.swift-format) is the code's layout; a file it would change fails the suite.
swift format lint --strict --recursive Sources Tests Package.swift || { echo "swift format: run 'swift format format --in-place --recursive Sources Tests Package.swift'"; status=1; }
swift build --build-tests
swift test --skip-build || status=$?
# The expression parser and evaluator under libFuzzer + AddressSanitizer, briefly.
FUZZ_SECONDS=${FUZZ_SECONDS:-30} scripts/fuzz.sh || status=$?
FLOWSTACK_BIN="$PWD/.build/debug/flowstack" .venv-test/bin/python -m pytest -q -p no:cacheprovider tests/e2e || status=$?
exit $status
