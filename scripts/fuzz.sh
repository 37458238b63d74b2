#!/usr/bin/env bash
# Builds the expression fuzzer with libFuzzer + AddressSanitizer and runs it for FUZZ_SECONDS
# (default 30). Any crash, sanitizer report or timeout fails the run.
set -euo pipefail
cd "$(dirname "$0")/../Fuzz"
swift build -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xlinker -fuse-ld=lld 2>&1 | tail -2 \
  || swift build -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
for seed in '$json.a.map(x => x * 2)' '{{ $json.s.toUpperCase() }}' '`${1 + 2}`' '*/5 * * * *' '$node["N"].json.x ?? 0' \
            "this.constructor.constructor('return process')()" '[1,[2,[3]]].flat(2).join("-")'; do
  printf '%s' "$seed" > "$corpus/$(printf '%s' "$seed" | sha1sum | cut -c1-12)"
done
SWIFT_BACKTRACE=enable=no .build/debug/ExpressionFuzz "$corpus" -max_total_time="${FUZZ_SECONDS:-30}" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1
