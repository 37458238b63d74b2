#!/usr/bin/env python3
"""Idle cost of active workflows: the CPU a `flowstack serve` uses with no traffic, empty and with
many active workflows (webhook-only, and some with a Schedule trigger every minute).

Method: one release server on SQLite (the embedded default; `--backend postgres`: a fresh database on the
test cluster) with a fresh data directory. The
workflows are created and activated through the API (8 client threads). Then the client stops and
the server's CPU time (utime + stime from /proc/PID/stat) is read over --window seconds; a figure
is the share of one core. With schedules, the window also counts the executions they started,
which must be exactly one per trigger per minute boundary crossed.

Writes a section of BENCHMARKS.md between <!-- bench:idle --> markers unless --no-report.
"""

import argparse
import os
import sqlite3
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import faults  # noqa: E402
from faults import Deployment  # noqa: E402

import benchdoc  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def webhook_workflow(index):
    return {"name": f"Hook {index}", "nodes": [
        {"name": "Hook", "type": "flowstack.webhook", "typeVersion": 1, "parameters": {"path": f"idle-{index}", "respond": "immediately"}},
        {"name": "Set", "type": "flowstack.set", "typeVersion": 1, "parameters": {"fields": {"n": index}}},
    ], "edges": [{"from": "Hook", "to": "Set"}]}


def schedule_workflow(index):
    return {"name": f"Tick {index}", "nodes": [
        {"name": "Every minute", "type": "flowstack.schedule", "typeVersion": 1, "parameters": {"cron": "* * * * *"}},
        {"name": "Set", "type": "flowstack.set", "typeVersion": 1, "parameters": {"fields": {"n": index}}},
    ], "edges": [{"from": "Every minute", "to": "Set"}]}


def create(deployment, definitions, threads=8):
    lock = threading.Lock()
    queue = list(definitions)
    failures = []

    def work():
        session = deployment.api()
        url = deployment.url()
        while True:
            with lock:
                if not queue:
                    return
                definition = queue.pop()
            r = session.post(url + f"/api/v1/projects/{deployment.project}/workflows", json=definition, timeout=60)
            if r.status_code != 201:
                failures.append(r.text[:200])
                continue
            r = session.post(url + f"/api/v1/workflows/{r.json()['id']}/activate", timeout=60)
            if r.status_code != 200:
                failures.append(r.text[:200])

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if failures:
        raise RuntimeError(f"{len(failures)} workflows failed: {failures[:3]}")


COUNT_SCHEDULED = "SELECT count(*) FROM executions WHERE mode = 'schedule'"


def executions(deployment, database):
    if database:
        out = subprocess.run(["psql", database, "-tAc", COUNT_SCHEDULED], check=True, capture_output=True, text=True)
        return int(out.stdout.strip())
    path = os.path.join(deployment.servers[0].data_dir, "flowstack.sqlite")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as connection:
        return connection.execute(COUNT_SCHEDULED).fetchone()[0]


def new_database(backend):
    """None (SQLite in the data directory), or the URL of a fresh database on the test cluster."""
    if backend == "sqlite":
        return None
    admin = os.environ["FLOWSTACK_TEST_POSTGRES_URL"]
    name = "bench_idle_%d" % int(time.time() * 1000)
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True)
    return admin.rsplit("/", 1)[0] + "/" + name


def measure(webhooks, schedules, window, backend):
    database = new_database(backend)
    deployment = Deployment(database, replicas=1, env={"FLOWSTACK_LOG_LEVEL": "warning"})
    deployment.start()
    try:
        began = time.time()
        create(deployment, [webhook_workflow(i) for i in range(webhooks)] + [schedule_workflow(i) for i in range(schedules)])
        setup = time.time() - began
        time.sleep(5)  # let the last activations settle
        pid = deployment.servers[0].proc.pid
        before_exec = executions(deployment, database) if schedules else 0
        start_wall, start_cpu = time.time(), cpu_seconds(pid)
        time.sleep(window)
        wall, cpu = time.time() - start_wall, cpu_seconds(pid) - start_cpu
        fired = (executions(deployment, database) - before_exec) if schedules else 0
        # Minute boundaries crossed in the window: each schedule fires once per boundary.
        boundaries = int(start_wall + wall) // 60 - int(start_wall) // 60
        return {"webhooks": webhooks, "schedules": schedules, "setup_s": setup, "cpu_share": cpu / wall, "fired": fired,
                "expected": boundaries * schedules, "window": wall}
    finally:
        deployment.destroy()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--webhooks", type=int, default=19_000)
    parser.add_argument("--schedules", type=int, default=1_000)
    parser.add_argument("--window", type=float, default=120)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite",
                        help="postgres: a fresh database on FLOWSTACK_TEST_POSTGRES_URL's cluster (source scripts/postgres.sh; pg_start)")
    parser.add_argument("--label", default="")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--output", default=os.path.join(ROOT, "BENCHMARKS.md"))
    args = parser.parse_args()
    os.environ.setdefault("FLOWSTACK_BIN", os.path.join(ROOT, ".build/release/flowstack"))
    rows = []
    for webhooks, schedules in [(0, 0), (args.webhooks + args.schedules, 0), (args.webhooks, args.schedules)]:
        result = measure(webhooks, schedules, args.window, args.backend)
        rows.append(result)
        faults.log(f"{result}")
    lines = ["| active workflows | of them schedules (every minute) | idle CPU, % of a core | schedule executions in the window (expected) | creating them, s |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['webhooks'] + r['schedules']:,} | {r['schedules']:,} | {r['cpu_share'] * 100:.2f} | "
                     f"{r['fired']:,} ({r['expected']:,}) | {r['setup_s']:.0f} |")
    print("\n".join(lines))
    if not args.no_report:
        title = "" if args.backend == "sqlite" else " on PostgreSQL"
        where = "SQLite" if args.backend == "sqlite" else "a throwaway PostgreSQL 15 on the same machine (its CPU not counted)"
        body = "\n".join([f"## Idle cost of active workflows{title} (`scripts/bench-idle.py --backend {args.backend}`)", "",
                          f"Method: one release `flowstack serve` on {where}; workflows created and activated through the API, then "
                          f"the server's CPU time (utime + stime) over a {args.window:g} s window with no traffic. With schedules the "
                          "window includes the executions they start (one per trigger per minute boundary). "
                          f"{args.label} Run on {time.strftime('%Y-%m-%d %H:%M')}.", "", *lines])
        benchdoc.write_section(args.output, "bench:idle" if args.backend == "sqlite" else "bench:idle:postgres", body)


if __name__ == "__main__":
    sys.exit(main())
