#!/usr/bin/env python3
"""A/B of the engine scenarios: reads the output of alternating `bench-engine.py` rounds of two
builds (`=== round N old|new` headers, as scripts/bench-ab.sh writes them) and writes the
`bench:ab` section of BENCHMARKS.md: every pair, the median of each side and new/old.

Throughput figures are executions/s (higher is better); latencies are ms (lower is better).
"""

import argparse
import os
import re
import statistics
import sys
import time

import benchdoc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(paths):
    """{(metric, side): [values in round order]}, and the metrics in first-seen order."""
    values, order, side = {}, [], None
    for path in paths:
        for line in open(path):
            if m := re.match(r"=== round \d+ (old|new)", line):
                side = m.group(1)
                continue
            found = []
            if m := re.match(r"(\S+) (sqlite|postgres) c=(\d+): (\d+)/s p50 ([\d.]+) ms p99 ([\d.]+) ms", line):
                found = [(f"{m.group(1)} {m.group(2)} c={m.group(3)}: executions/s", float(m.group(4))),
                         (f"{m.group(1)} {m.group(2)} c={m.group(3)}: p99 ms", float(m.group(6)))]
            elif m := re.match(r"per-step (sqlite|postgres): \(([\d.]+), ([\d.]+), ([\d.]+)\)", line):
                found = [(f"run?wait=true, 1 node, {m.group(1)}: ms", float(m.group(3))),
                         (f"run?wait=true, 40 nodes, {m.group(1)}: ms", float(m.group(2)))]
            elif m := re.match(r"flowstack 3-step chains/s: (\d+)", line):
                found = [("3-step chains, postgres: chains/s", float(m.group(1)))]
            for metric, value in found:
                if side is None:
                    continue
                if metric not in order:
                    order.append(metric)
                values.setdefault((metric, side), []).append(value)
    return values, order


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("logs", nargs="+")
    parser.add_argument("--old", required=True, help="what the old build is (a commit)")
    parser.add_argument("--new", required=True, help="what the new build is (a commit)")
    parser.add_argument("--output", default=os.path.join(ROOT, "BENCHMARKS.md"))
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    values, order = parse(args.logs)
    rounds = max((len(v) for v in values.values()), default=0)
    lines = ["| metric | old (each round) | new (each round) | old median | new median | new / old |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    ratios = []
    for metric in order:
        old, new = values.get((metric, "old"), []), values.get((metric, "new"), [])
        if not old or not new:
            continue
        mo, mn = statistics.median(old), statistics.median(new)
        ratio = mn / mo if mo else float("nan")
        better_high = metric.endswith("/s")
        ratios.append(ratio if better_high else 1 / ratio)
        fmt = (lambda v: f"{v:,.0f}") if better_high else (lambda v: f"{v:.2f}")
        lines.append(f"| {metric} | {', '.join(map(fmt, old))} | {', '.join(map(fmt, new))} | {fmt(mo)} | {fmt(mn)} | {ratio:.2f} |")
    geo = statistics.geometric_mean(ratios) if ratios else float("nan")
    body = "\n".join([
        "## Engine scenarios, A/B against the previous main (`scripts/bench-ab.sh`)",
        "",
        f"Method: release builds of `{args.old}` (old) and `{args.new}` (new) on the same machine, alternating: {rounds} "
        "rounds of each (old, new, old, new, new, old: neither side always runs first). Each round is "
        "`scripts/bench-engine.py` with 10 s per scenario at 200 connections, after a 5 s warm-up, on SQLite and a "
        "throwaway PostgreSQL. Closed loop; wrk, the server and PostgreSQL share the 2 cores. "
        f"Run on {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        *lines,
        "",
        f"Geometric mean over all rows of new/old, each turned so that above 1 is better: {geo:.2f}.",
    ])
    print(body)
    if not args.no_report:
        benchdoc.write_section(args.output, "bench:ab", body)


if __name__ == "__main__":
    sys.exit(main())
