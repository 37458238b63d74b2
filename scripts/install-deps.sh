#!/usr/bin/env bash
# Installs the Debian packages FlowStack needs that are missing (idempotent).
#   scripts/install-deps.sh          what building and running need
#   scripts/install-deps.sh --test   also what the test suite needs
set -euo pipefail

packages=(libargon2-dev libsqlite3-dev libjavascriptcoregtk-4.1-dev pkg-config openssl ca-certificates)
if [ "${1:-}" = "--test" ]; then
  packages+=(postgresql-15 postgresql-client-15 curl sqlite3 python3-venv)
fi
if [ "${1:-}" = "--bench" ]; then
  packages+=(postgresql-15 postgresql-client-15 wrk)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3-venv is only needed when the interpreter on PATH cannot make a venv.
if [[ " ${missing[*]:-} " == *" python3-venv "* ]] && python3 -c 'import venv, ensurepip' 2>/dev/null; then
  missing=("${missing[@]/python3-venv}")
fi
missing=(${missing[@]:-})
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing: ${missing[*]}"
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
