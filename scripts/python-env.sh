#!/usr/bin/env bash
# Python tools for the end-to-end tests, each in its own virtual environment:
# pytest + requests + schemathesis in .venv-test, sslyze in .venv-sslyze (it needs cryptography<47).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-test/bin/schemathesis ]; then
  python3 -m venv .venv-test
  .venv-test/bin/pip install -q --disable-pip-version-check pytest requests 'schemathesis>=4,<5'
fi
if [ ! -x .venv-sslyze/bin/sslyze ]; then
  python3 -m venv .venv-sslyze
  .venv-sslyze/bin/pip install -q --disable-pip-version-check 'sslyze==6.3.*' 'cryptography<47'
fi
