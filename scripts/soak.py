#!/usr/bin/env python3
"""Soak benchmark of the real binary (not run in CI): is anything growing under steady load?

For each database (SQLite in the data dir, and PostgreSQL on a throwaway cluster of its own),
one `flowstack serve` runs a steady mixed load for --minutes: webhooks that answer immediately,
webhooks that answer with the last node, and a Webhook -> Wait (1 s) -> Code -> Set workflow.
Every --interval seconds it samples the server's RSS (VmRSS), its open descriptors, its
`flowstack-sandbox` children, the queue depth (queued + running executions) and the latency of
the requests that finished in that interval.

`--queued N` instead submits N executions (respond "immediately") as fast as the server takes
them and records RSS after the first 5,000 and after N; the acceptance figure is RSS after
100,000 within 32 MiB of RSS after 5,000.

Results go into RELIABILITY.md (each mode replaces only its own section). Traffic stays on
127.0.0.1; every loop is bounded in count and time.

    scripts/soak.sh --minutes 30
    scripts/soak.sh --queued 100000
"""
import argparse
import json
import os
import signal
import sqlite3
import sys
import threading
import time

import benchdoc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
os.environ.setdefault("FLOWSTACK_BIN", os.path.join(ROOT, ".build", "release", "flowstack"))

import conftest  # noqa: E402
import faults  # noqa: E402
from faults import Deployment, LoadDriver, PgCluster, log, percentile, process_stats, run_psql  # noqa: E402

MIB = 1024


class Window:
    """Results of the current sampling interval (the load drivers' sink)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = {}
        self.errors = 0
        self.accepted = 0
        self.total = 0

    def add(self, result):
        with self.lock:
            self.total += 1
            if result.status in (200, 202):
                self.accepted += 1
                self.latencies.setdefault(result.target.rsplit("/", 1)[-1].split("-")[0], []).append(result.latency)
            else:
                self.errors += 1

    def take(self):
        with self.lock:
            latencies, errors, self.latencies, self.errors = self.latencies, self.errors, {}, 0
            return latencies, errors


def queue_depth(kind, deployment, database):
    """Queued + running executions, straight from the database."""
    sql = "SELECT count(*) FROM executions WHERE status IN ('queued', 'running')"
    if kind == "postgres":
        return int(run_psql(database, sql).strip())
    path = os.path.join(deployment.servers[0].data_dir, "flowstack.sqlite")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as connection:
        return connection.execute(sql).fetchone()[0]


def start(kind, pg, env):
    database = pg.create_database("soak") if kind == "postgres" else None
    deployment = Deployment(database, replicas=1, env=env)
    deployment.start()
    return deployment, database


def steady(kind, pg, args):
    deployment, database = start(kind, pg, {"FLOWSTACK_LOG_LEVEL": args.log_level})
    samples = []
    drivers = []
    try:
        server = deployment.servers[0]
        paths = {"immediate": "immediate-soak", "lastnode": "lastnode-soak", "waitcode": "waitcode-soak"}
        deployment.create_workflow(faults.set_workflow(paths["immediate"], respond="immediately", name="Immediate"))
        deployment.create_workflow(faults.set_workflow(paths["lastnode"], respond="lastNode", name="LastNode"))
        deployment.create_workflow(faults.wait_code_workflow(paths["waitcode"], respond="immediately", name="WaitCode"))
        window = Window()
        duration = args.minutes * 60
        rates = {"immediate": args.rate * 0.4, "lastnode": args.rate * 0.4, "waitcode": args.rate * 0.2}
        for name, rate in rates.items():
            drivers.append(LoadDriver([(server.url + "/webhook/" + paths[name], server.ca)], threads=max(1, round(args.threads * rate / args.rate)),
                                      rate=rate, duration=duration, max_requests=int(rate * duration) + 10, sink=window.add, prefix=name))
        began = time.time()
        for driver in drivers:
            driver.start()
        log(f"{kind}: steady load of {args.rate}/s for {args.minutes} min (pid {server.proc.pid})")
        next_sample = began
        while True:
            now = time.time()
            if next_sample > now:
                time.sleep(next_sample - now)
            next_sample += args.interval
            elapsed = time.time() - began
            stats = process_stats(server.proc.pid)
            latencies, errors = window.take()
            every = sorted(l for values in latencies.values() for l in values)
            sample = {"t": elapsed, **stats, "queue": queue_depth(kind, deployment, database), "requests": len(every) + errors,
                      "errors": errors, "p50_ms": percentile(every, 50) * 1000, "p99_ms": percentile(every, 99) * 1000,
                      "p99_by_kind": {k: percentile(v, 99) * 1000 for k, v in latencies.items()}}
            samples.append(sample)
            log(f"{kind} +{elapsed / 60:5.1f} min: RSS {stats['rss_kib'] / MIB:.1f} MiB, fds {stats['fds']}, sandboxes {stats['sandboxes']}, "
                f"queue {sample['queue']}, {sample['requests']} req ({errors} errors), p99 {sample['p99_ms']:.0f} ms")
            if server.proc.poll() is not None:
                log(f"{kind}: the server exited with {server.proc.returncode}")
                break
            if elapsed >= duration + args.interval:
                break
        for driver in drivers:
            driver.stop()
            driver.join(30)
    finally:
        for driver in drivers:
            driver.stop()
        deployment.destroy()
    return samples


def queued(kind, pg, args):
    deployment, database = start(kind, pg, {"FLOWSTACK_LOG_LEVEL": args.log_level})
    marks = {}
    samples = []
    driver = None
    try:
        server = deployment.servers[0]
        deployment.create_workflow(faults.set_workflow("queued-soak", respond="immediately", name="Queued"))
        window = Window()
        driver = LoadDriver([(server.url + "/webhook/queued-soak", server.ca)], threads=args.threads, rate=100000, duration=args.queued_timeout,
                            max_requests=args.queued, sink=window.add, prefix="q")
        began = time.time()
        driver.start()
        log(f"{kind}: submitting {args.queued} executions as fast as they are taken (pid {server.proc.pid})")
        next_sample = began + args.interval
        first = None
        while any(worker.is_alive() for worker in driver._workers):
            time.sleep(0.05)
            with window.lock:
                accepted = window.accepted
            if first is None and accepted >= 5000:
                first = process_stats(server.proc.pid)
                marks["after_5000"] = {"t": time.time() - began, "accepted": accepted, **first}
                log(f"{kind}: after {accepted} accepted: RSS {first['rss_kib'] / MIB:.1f} MiB")
            if time.time() >= next_sample:
                next_sample += args.interval
                stats = process_stats(server.proc.pid)
                samples.append({"t": time.time() - began, "accepted": accepted, **stats, "queue": queue_depth(kind, deployment, database)})
                log(f"{kind} +{samples[-1]['t']:.0f} s: {accepted} accepted, RSS {stats['rss_kib'] / MIB:.1f} MiB, fds {stats['fds']}, "
                    f"queue {samples[-1]['queue']}")
            if server.proc.poll() is not None:
                log(f"{kind}: the server exited with {server.proc.returncode}")
                break
        with window.lock:
            accepted, total = window.accepted, window.total
        stats = process_stats(server.proc.pid)
        marks["after_all"] = {"t": time.time() - began, "accepted": accepted, "sent": total, **stats,
                              "queue": queue_depth(kind, deployment, database)}
        log(f"{kind}: after {accepted} accepted of {total}: RSS {stats['rss_kib'] / MIB:.1f} MiB")
        deadline = time.time() + args.drain_timeout
        while queue_depth(kind, deployment, database) and time.time() < deadline:
            time.sleep(1)
        marks["drained"] = {"t": time.time() - began, "queue": queue_depth(kind, deployment, database), **process_stats(server.proc.pid)}
    finally:
        if driver:
            driver.stop()
        deployment.destroy()
    return {"marks": marks, "samples": samples}


# MARK: RELIABILITY.md


HEADER = """# Reliability

What FlowStack does over time and under faults, measured on the real binary. The fault tests
(`tests/e2e/test_faults.py`, part of the end-to-end suite) check the promises of
[docs/workflow-format.md](docs/workflow-format.md#durable-executions-the-server) under PostgreSQL
restarts, a stopped or killed replica and commits whose outcome is unknown; the soak benchmark
below (`scripts/soak.sh`, not run in CI) checks that nothing grows under steady load.

## Soak method

- One `flowstack serve` per database, on its own data directory: SQLite (the embedded default)
  and PostgreSQL 15 (a throwaway cluster of the script's own, `fsync=off`, on 127.0.0.1).
- **Steady load** (`--minutes`, default 30; `--rate` requests/s in all, default 20): 40 % webhooks
  with `respond: immediately` (Webhook → Set), 40 % with `respond: lastNode` (Webhook → Set),
  20 % Webhook (immediately) → Wait 1 s → Code → Set. Client threads pace themselves (a slow
  or failing server is not hammered); each keeps its HTTPS connection alive.
- Every `--interval` (10 s) the script samples the server process: RSS (`VmRSS` in
  `/proc/PID/status`), open descriptors (`/proc/PID/fd`), `flowstack-sandbox` children, the queue
  depth (queued + running executions, read from the database) and p50/p99 latency of the requests
  that finished in the interval.
- **Queued** (`--queued N`): N webhooks with `respond: immediately` (Webhook → Set) sent by 8
  threads as fast as the server answers; RSS after the first 5,000 accepted and after N.
  Acceptance: RSS after 100,000 within 32 MiB of RSS after 5,000.
- The machine: 2 cores, 24 GiB; client, server and PostgreSQL share the cores, so latencies
  include the client's own CPU time.
"""


def section(text, name, body):
    return benchdoc.replace_section(text, f"soak:{name}", body)


BUILD = None


def binary_note():
    binary = os.environ["FLOWSTACK_BIN"]
    build = BUILD or ("release build" if "/release/" in binary else "debug build" if "/debug/" in binary else "build not labelled")
    return f"Binary: `{binary}` ({build}), run on {time.strftime('%Y-%m-%d %H:%M')}."


def steady_markdown(kind, samples, args):
    out = [f"## Steady load on {kind}: {args.minutes:g} min at {args.rate:g} requests/s", "", binary_note(), ""]
    if not samples:
        return "\n".join(out + ["No samples (the server did not come up?).", ""])
    first, last = samples[0], samples[-1]
    peak = max(s["rss_kib"] for s in samples)
    out += [f"RSS {first['rss_kib'] / MIB:.1f} → {last['rss_kib'] / MIB:.1f} MiB (peak {peak / MIB:.1f}); descriptors {first['fds']} → "
            f"{last['fds']}; sandboxes {first['sandboxes']} → {last['sandboxes']}; "
            f"{sum(s['requests'] for s in samples)} requests, {sum(s['errors'] for s in samples)} errors.", "",
            "| elapsed (m:ss) | RSS MiB | fds | sandboxes | queue | requests | errors | p50 ms | p99 ms |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    # At most ~30 rows: every k-th sample, and always the last.
    step = max(1, len(samples) // 30)
    shown = samples[::step] + ([last] if (len(samples) - 1) % step else [])
    for s in shown:
        out.append(f"| {int(s['t'] // 60)}:{int(s['t'] % 60):02d} | {s['rss_kib'] / MIB:.1f} | {s['fds']} | {s['sandboxes']} | {s['queue']} | "
                   f"{s['requests']} | {s['errors']} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} |")
    return "\n".join(out) + "\n"


def queued_markdown(kind, result, args):
    out = [f"## Queued on {kind}: {args.queued:,} executions submitted as fast as they are taken", "", binary_note(), "",
           "| RSS after 5,000 | RSS after all | growth | accepted / sent | seconds | queue at the end | after draining | verdict |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    marks = result["marks"]
    first, last, drained = marks.get("after_5000"), marks.get("after_all"), marks.get("drained")
    if not first or not last:
        out.append(f"| – | – | – | {last and last['accepted']} / {last and last['sent']} | | | | fewer than 5,000 accepted |")
        return "\n".join(out) + "\n"
    growth = (last["rss_kib"] - first["rss_kib"]) / MIB
    verdict = "within 32 MiB" if growth <= 32 else "**over 32 MiB**"
    if args.queued < 100000:
        verdict += f" (the acceptance figure is for 100,000)"
    out.append(f"| {first['rss_kib'] / MIB:.1f} MiB | {last['rss_kib'] / MIB:.1f} MiB | {growth:+.1f} MiB | {last['accepted']} / {last['sent']} | "
               f"{last['t']:.0f} | {last['queue']} | {drained['rss_kib'] / MIB:.1f} MiB, queue {drained['queue']} | {verdict} |")
    samples = result["samples"]
    if samples:
        step = max(1, len(samples) // 12)
        out += ["", "Samples: " + ", ".join(f"{s['accepted']:,} → {s['rss_kib'] / MIB:.1f} MiB" for s in samples[::step]) + "."]
    return "\n".join(out) + "\n"


def write_report(path, name, body):
    text = open(path).read() if os.path.exists(path) else HEADER
    if "## Soak method" not in text:
        text = HEADER + "\n" + text
    with open(path, "w") as f:
        f.write(section(text, name, body))
    log(f"wrote {path} ({name})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=20, help="requests per second in all (steady mode)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--interval", type=float, default=10, help="seconds between samples")
    parser.add_argument("--queued", type=int, default=0, help="instead of the steady load: submit N executions as fast as possible")
    parser.add_argument("--queued-timeout", type=float, default=3600, help="upper bound on the submitting phase, seconds")
    parser.add_argument("--drain-timeout", type=float, default=600, help="upper bound on waiting for the queue to drain, seconds")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--log-level", default="warning", help="the server's FLOWSTACK_LOG_LEVEL")
    parser.add_argument("--output", default=os.path.join(ROOT, "RELIABILITY.md"))
    parser.add_argument("--build", help="how the binary was built, for the report, e.g. 'release build' (default: from its path)")
    parser.add_argument("--json", help="also write the raw samples to this file")
    parser.add_argument("--no-report", action="store_true", help="print only, do not write RELIABILITY.md")
    args = parser.parse_args()
    binary = os.environ["FLOWSTACK_BIN"]
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is not an executable: build it (swift build -c release) or set FLOWSTACK_BIN")
    conftest.BIN = binary
    global BUILD
    BUILD = args.build
    # SIGTERM (e.g. from timeout) cleans up like Ctrl-C: servers stopped, the cluster removed.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    pg = PgCluster().start() if "postgres" in kinds else None
    results = {}
    try:
        for kind in kinds:
            results[kind] = queued(kind, pg, args) if args.queued else steady(kind, pg, args)
    finally:
        if pg:
            pg.destroy()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "binary": binary, "results": results}, f, indent=1)
    if not args.no_report:
        for kind, result in results.items():
            if args.queued:
                write_report(args.output, f"queued-{kind}", queued_markdown(kind, result, args))
            else:
                write_report(args.output, f"steady-{kind}", steady_markdown(kind, result, args))
    if args.queued:
        failed = [k for k, r in results.items() if not r["marks"].get("after_all") or not r["marks"].get("after_5000")
                  or r["marks"]["after_all"]["rss_kib"] - r["marks"]["after_5000"]["rss_kib"] > 32 * MIB]
        if failed:
            log(f"RSS grew by more than 32 MiB (or too few were accepted) on: {', '.join(failed)}")
            sys.exit(1)


if __name__ == "__main__":
    main()
