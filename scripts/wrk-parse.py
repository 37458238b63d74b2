"""Prints 'rps p50_ms p99_ms errors' from a `wrk --latency` report."""
import re
import sys

text = open(sys.argv[1]).read()

def ms(label):
    match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errors = 0
for pattern in [r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"]:
    match = re.search(pattern, text)
    if match:
        errors += sum(int(g) for g in match.groups())
print(f"{rps:.0f} {ms('50'):.2f} {ms('99'):.2f} {errors}")
