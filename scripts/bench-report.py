"""Turns 'engine rps p50 p99 errors' lines into BENCHMARKS.md (medians across runs)."""
import os
import platform
import statistics
import subprocess
import sys
from datetime import date

duration, connections, runs = sys.argv[1:4]
threads = sys.argv[4] if len(sys.argv) > 4 else "2"
rows = {}
for line in sys.stdin:
    engine, rps, p50, p99, errors = line.split()
    rows.setdefault(engine, []).append((float(rps), float(p50), float(p99), int(errors)))

cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()

print("# Benchmarks\n")
print("## API-key-authenticated `GET /api/v1/me` over TLS 1.3 (keep-alive)\n")
print(f"Measured {date.today().isoformat()} at commit `{commit}` on {os.cpu_count()} cores ({cpu}), {platform.system()}.")
print(f"Method: `scripts/bench.sh` — release build of `flowstack serve`; `wrk -t{threads} -c{connections} -d{duration} --latency`")
print("with an `Authorization: Bearer fsk_…` read key, after a 5 s warm-up; wrk and the server share the")
print(f"same two cores. {runs} runs per engine; the table gives the median of each column and the range of")
print("requests/s. Each request authenticates the key (its lookup — the key joined with its creator,")
print("organization and membership — is cached for one second, so most requests read nothing from the")
print("database) and encodes the caller and their organization as JSON.\n")
print("| engine | requests/s (median) | range | p50 latency | p99 latency | errors |")
print("| --- | --- | --- | --- | --- | --- |")
for engine, values in rows.items():
    rps = [v[0] for v in values]
    print(f"| {engine} | {statistics.median(rps):,.0f} | {min(rps):,.0f}–{max(rps):,.0f} | "
          f"{statistics.median(v[1] for v in values):.2f} ms | {statistics.median(v[2] for v in values):.2f} ms | {sum(v[3] for v in values)} |")
if "sqlite" in rows and "postgres" in rows:
    ratio = statistics.median(v[0] for v in rows["sqlite"]) / statistics.median(v[0] for v in rows["postgres"])
    print(f"\nSQLite / PostgreSQL throughput ratio: {ratio:.2f}.")
print("\nTarget (issue 2): ≥ 5,000 requests/s with p99 < 20 ms on SQLite on this 2-core machine.")
notes = os.path.join(os.path.dirname(__file__), "bench-notes.md")
if os.path.exists(notes):
    print()
    print(open(notes).read().rstrip())
