#!/usr/bin/env python3
"""Item-scaling benchmark: how the time of each node type grows with the number of items.

Runs the release `flowstack run` (no server, no database) on generated workflows and inputs, and
reads each node's own time from the per-node summary it prints on standard error; wall time and
peak RSS come from /usr/bin/time. Every figure is the median of --repeats runs.

Scenarios:
  chain-input   N input items (`--input`) → Set (one expression) → Filter → Aggregate
  chain-code    Manual → Code (makes N items) → Set → Filter → Aggregate
  node-<type>   N input items → one node of that type → Limit 1 (each node's ratio
                time(100k) / time(10k); linear is 10, the target is at most 12)

Writes a section of BENCHMARKS.md between <!-- bench:items --> markers unless --no-report.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import benchdoc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1024


def item(i):
    return {"id": i, "name": f"item-{i}", "group": i % 7, "price": (i * 37) % 1000 / 10, "tags": ["a", "b"] if i % 2 else ["c"],
            "when": "2026-01-02T03:04:05Z"}


NODES = {
    "set": {"type": "flowstack.set", "parameters": {"fields": {"double": "{{ $json.price * 2 }}", "label": "{{ $json.name }}!"}}},
    "filter": {"type": "flowstack.filter", "parameters": {"condition": "{{ $json.group > 2 }}"}},
    "if": {"type": "flowstack.if", "parameters": {"condition": "{{ $json.group > 2 }}"}},
    "switch": {"type": "flowstack.switch", "parameters": {"rules": ["{{ $json.group == 1 }}", "{{ $json.group == 2 }}"]}},
    "sort": {"type": "flowstack.sort", "parameters": {"field": "price", "order": "descending"}},
    "limit": {"type": "flowstack.limit", "parameters": {"maxItems": 1000000000, "keep": "last"}},
    "aggregate": {"type": "flowstack.aggregate", "parameters": {"field": "price"}},
    "removeDuplicates": {"type": "flowstack.removeDuplicates", "parameters": {"field": "name"}},
    "splitOut": {"type": "flowstack.splitOut", "parameters": {"field": "tags"}},
    "dateTime": {"type": "flowstack.dateTime", "parameters": {"operation": "add", "value": "{{ $json.when }}", "amount": 1, "unit": "days"}},
    "crypto": {"type": "flowstack.crypto", "parameters": {"action": "hash", "type": "SHA256", "value": "{{ $json.name }}"}},
    "noOp": {"type": "flowstack.noOp", "parameters": {}},
    "code": {"type": "flowstack.code", "parameters": {"code": "return $input.all().map(i => ({json: {id: i.json.id, p: i.json.price}}));"}},
}


def workflow(name, steps, trigger="manual"):
    nodes = [{"name": "Start", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": {}}]
    edges = []
    previous = "Start"
    for index, (label, node) in enumerate(steps):
        node_name = f"{index + 1} {label}"
        nodes.append({"name": node_name, "typeVersion": 1, **node})
        edges.append({"from": previous, "to": node_name})
        previous = node_name
    return {"name": name, "nodes": nodes, "edges": edges}


def run_once(binary, wf_path, input_path):
    args = ["/usr/bin/time", "-f", "TIME %e %M", binary, "run", wf_path]
    if input_path:
        args += ["--input", input_path]
    began = time.monotonic()
    proc = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - began
    if proc.returncode != 0:
        raise RuntimeError(f"flowstack run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    nodes = {}
    rss = None
    for line in proc.stderr.splitlines():
        match = re.match(r"^(.{24}) (\S+)\s+(\d+) items\s+(\d+) tries\s+([\d.]+) ms", line)
        if match:
            nodes[match.group(1).strip()] = (match.group(2), int(match.group(3)), float(match.group(5)))
        if line.startswith("TIME "):
            rss = int(line.split()[2]) / MIB
    return wall, rss, nodes


def measure(binary, wf, items, repeats, workdir):
    wf_path = os.path.join(workdir, "workflow.json")
    with open(wf_path, "w") as f:
        json.dump(wf, f)
    input_path = None
    if items is not None:
        input_path = os.path.join(workdir, f"input-{items}.json")
        if not os.path.exists(input_path):
            with open(input_path, "w") as f:
                f.write("[")
                for i in range(items):
                    if i:
                        f.write(",")
                    f.write(json.dumps(item(i), separators=(",", ":")))
                f.write("]")
    runs = [run_once(binary, wf_path, input_path) for _ in range(repeats)]
    wall = statistics.median(r[0] for r in runs)
    rss = statistics.median(r[1] for r in runs)
    names = runs[0][2].keys()
    nodes = {name: statistics.median(r[2][name][2] for r in runs) for name in names}
    return wall, rss, nodes, runs[0][2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.environ.get("FLOWSTACK_BIN", os.path.join(ROOT, ".build/release/flowstack")))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big", type=int, default=1_000_000, help="items for the chain-input scenario's largest run")
    parser.add_argument("--nodes", default=",".join(NODES), help="node types for the per-node ratios")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--label", default="", help="what was measured, for the report (e.g. a commit)")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--output", default=os.path.join(ROOT, "BENCHMARKS.md"))
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="flowstack-items-")
    lines = []

    def say(text):
        print(text, flush=True)
        lines.append(text)

    chain = [("Set", NODES["set"]), ("Filter", NODES["filter"]), ("Aggregate", NODES["aggregate"])]
    results = {}
    say("| scenario | items | wall s | peak RSS MiB | per node, ms |")
    say("| --- | ---: | ---: | ---: | --- |")
    for n in (args.small, args.large, args.big):
        wall, rss, nodes, _ = measure(args.binary, workflow("chain-input", chain), n, args.repeats if n < args.big else 1, workdir)
        results[("chain-input", n)] = (wall, rss)
        say(f"| chain-input | {n:,} | {wall:.2f} | {rss:.0f} | " + ", ".join(f"{k} {v:.0f}" for k, v in nodes.items()) + " |")
    for n in (args.small, args.large):
        code = {"type": "flowstack.code", "parameters": {"code": f"const out = []; for (let i = 0; i < {n}; i++) out.push({{json: {{id: i, name: 'item-' + i, group: i % 7, price: (i * 37) % 1000 / 10}}}}); return out;"}}
        wall, rss, nodes, _ = measure(args.binary, workflow("chain-code", [("Code", code)] + chain), None, args.repeats, workdir)
        results[("chain-code", n)] = (wall, rss)
        say(f"| chain-code | {n:,} | {wall:.2f} | {rss:.0f} | " + ", ".join(f"{k} {v:.0f}" for k, v in nodes.items()) + " |")
    say("")
    say(f"| node type | {args.small:,} items, ms | {args.large:,} items, ms | ratio (linear = {args.large / args.small:g}) |")
    say("| --- | ---: | ---: | ---: |")
    worst = 0.0
    for name in [n for n in args.nodes.split(",") if n]:
        steps = [(name, NODES[name]), ("Limit", {"type": "flowstack.limit", "parameters": {"maxItems": 1}})]
        times = []
        for n in (args.small, args.large):
            _, _, nodes, _ = measure(args.binary, workflow(f"node-{name}", steps), n, args.repeats, workdir)
            times.append(nodes[f"1 {name}"])
        if times[1] < 1:
            # Below the summary's resolution at both sizes: no ratio to speak of.
            say(f"| {name} | {times[0]:.1f} | {times[1]:.1f} | (under 1 ms) |")
            continue
        ratio = times[1] / max(times[0], 0.05)
        worst = max(worst, ratio)
        say(f"| {name} | {times[0]:.1f} | {times[1]:.1f} | {ratio:.1f} |")
    say("")
    say(f"Worst ratio: {worst:.1f}.")
    if not args.no_report:
        report(args, lines)


def report(args, lines):
    body = "\n".join([
        "## Item scaling (`scripts/bench-items.py`)",
        "",
        "Method: the release `flowstack run` (no server, no database), on generated items of six fields "
        "(`--input` JSON file, or made by a Code node). Per-node times are each node's own time from the run's "
        "summary; wall time and peak RSS (`/usr/bin/time`) are the whole process, including parsing the input "
        f"and printing the output. Medians of {args.repeats} runs (one for the largest). {args.label} "
        f"Run on {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        *lines,
    ])
    benchdoc.write_section(args.output, "bench:items", body)


if __name__ == "__main__":
    sys.exit(main())
