"""Engine benchmarks (issue 3): the five scenarios after n8n's benchmark suite plus a side-by-side
with procrastinate, on SQLite and PostgreSQL, against the release binary. Prints a Markdown section
that scripts/bench-engine.sh puts into BENCHMARKS.md.

Method: closed-loop load with wrk (2 threads) for DURATION per run at 50 and 200 connections, one
warm-up, RUNS runs (3; medians reported); every execution is persisted and sealed (journal of each node). Scenario 5 and
the procrastinate comparison use a Python client. Medians are reported; the machine is a shared
2-core VM, and wrk and the mock server share it with FlowStack.
"""
import http.server
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests

BIN = os.environ.get("FLOWSTACK_BIN", ".build/release/flowstack")
DURATION = os.environ.get("DURATION", "30s")
RUNS = int(os.environ.get("RUNS", "3"))
CONNECTIONS = [int(c) for c in os.environ.get("CONNECTIONS", "50,200").split(",")]
PG = os.environ["FLOWSTACK_TEST_POSTGRES_URL"]
PASSWORD = "Bench-Passw0rd"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Mock:
    """The remote API of the http-node scenario: answers every GET with a small JSON body."""

    def __init__(self):
        body = b'{"price": 42, "currency": "EUR"}'

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: without TCP_NODELAY, a keep-alive client waits
            # for the delayed ACK (40 ms) between them, as no real API server would make it.
            disable_nagle_algorithm = True

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def node(name, type_, **parameters):
    return {"name": name, "type": "flowstack." + type_, "typeVersion": 1, "parameters": parameters}


def chain(name, nodes):
    return {"name": name, "nodes": nodes, "edges": [{"from": a["name"], "to": b["name"]} for a, b in zip(nodes, nodes[1:])]}


def scenarios(mock_port):
    hook = lambda path: node("Hook", "webhook", method="POST", path=path, respond="lastNode")
    http = lambda n: node(n, "httpRequest", url=f"http://127.0.0.1:{mock_port}/price/{n}")
    fields = {f"f{i}": "{{ $json.body.value * %d + $json.body.name.length }}" % i for i in range(1, 6)}
    fields["upper"] = "{{ $json.body.name.toUpperCase() }}"
    parallel = {"name": "http-node", "nodes": [hook("http-node"), http("A"), http("B"), http("C"),
                                               node("M1", "merge"), node("M2", "merge"), node("Shape", "set", fields={"done": True})],
                "edges": [{"from": "Hook", "to": "A"}, {"from": "Hook", "to": "B"}, {"from": "Hook", "to": "C"},
                          {"from": "A", "to": "M1"}, {"from": "B", "to": "M1", "input": 1},
                          {"from": "M1", "to": "M2"}, {"from": "C", "to": "M2", "input": 1}, {"from": "M2", "to": "Shape"}]}
    code = "const out = []; for (let i = 0; i < 100; i++) out.push({json: {i, v: i * 2}});\nreturn out.map(x => ({json: {...x.json, label: 'item ' + x.json.i}}));"
    return {
        "single-webhook": chain("single-webhook", [hook("single-webhook"), node("Respond", "noOp")]),
        "set-node-expressions": chain("set-node-expressions", [hook("set-node-expressions"), node("Set", "set", fields=fields)]),
        "http-node": parallel,
        "js-code-node": chain("js-code-node", [hook("js-code-node"), node("Code", "code", code=code)]),
    }


class Server:
    def __init__(self, engine, work):
        self.data = os.path.join(work, engine)
        self.port = free_port()
        args = [BIN, "serve", "--data-dir", self.data, "--port", str(self.port), "--log-level", "warning", "--http-allow", "127.0.0.1/32"]
        if engine == "postgres":
            database = "bench_engine_%d" % int(time.time())
            subprocess.run(["psql", PG, "-qc", f"CREATE DATABASE {database}"], check=True)
            args += ["--database", PG.rsplit("/", 1)[0] + "/" + database]
        self.log = open(os.path.join(work, engine + ".log"), "w")
        # The benchmark is one client at full speed: the per-client rate and connection limits are off.
        env = dict(os.environ, FLOWSTACK_RATE_API_PER_SECOND="0", FLOWSTACK_RATE_API_BURST="0", FLOWSTACK_RATE_KEY_PER_SECOND="0",
                   FLOWSTACK_RATE_KEY_BURST="0", FLOWSTACK_RATE_ORG_PER_SECOND="0", FLOWSTACK_RATE_ORG_BURST="0",
                   FLOWSTACK_RATE_WEBHOOK_PER_SECOND="0", FLOWSTACK_RATE_WEBHOOK_BURST="0", FLOWSTACK_RATE_WEBHOOK_ADDRESS_PER_SECOND="0",
                   FLOWSTACK_RATE_WEBHOOK_ADDRESS_BURST="0", FLOWSTACK_HANDSHAKES_PER_SECOND="0", FLOWSTACK_CONNECTIONS_PER_ADDRESS="0")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.url = f"https://localhost:{self.port}"
        self.ca = os.path.join(self.data, "tls", "server.crt")
        for _ in range(300):
            try:
                if os.path.exists(self.ca) and requests.get(self.url + "/healthz", verify=self.ca, timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        s = self.session()
        token = open(os.path.join(self.data, "setup-token")).read().strip()
        org = s.post(self.url + "/api/v1/setup", json={"token": token, "email": "bench@example.com", "password": PASSWORD,
                                                        "name": "B", "organization": "B"}).json()["organization"]["id"]
        csrf = s.post(self.url + "/api/v1/auth/login", json={"email": "bench@example.com", "password": PASSWORD}).json()["csrfToken"]
        s.headers["X-CSRF-Token"] = csrf
        key = s.post(self.url + f"/api/v1/orgs/{org}/api-keys", json={"name": "bench", "scope": "write"}).json()["key"]
        self.api = self.session()
        self.api.headers["Authorization"] = "Bearer " + key
        self.project = self.api.post(self.url + f"/api/v1/orgs/{org}/projects", json={"name": "bench"}).json()["id"]

    def session(self):
        s = requests.Session()
        s.trust_env = False
        s.verify = self.ca
        return s

    def workflow(self, definition, activate=True):
        r = self.api.post(self.url + f"/api/v1/projects/{self.project}/workflows", json=definition)
        assert r.status_code == 201, r.text
        wid = r.json()["id"]
        if activate:
            assert self.api.post(self.url + f"/api/v1/workflows/{wid}/activate").ok
        return wid

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def wrk(url, connections, duration, work):
    script = os.path.join(work, "post.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                'wrk.body = \'{"name": "Ada Lovelace", "value": 7}\'\n')
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}", "--latency", "-s", script, url],
                         capture_output=True, text=True).stdout
    path = os.path.join(work, "wrk.txt")
    open(path, "w").write(out)
    rps, p50, p99, errors = subprocess.run([sys.executable, "scripts/wrk-parse.py", path], capture_output=True, text=True).stdout.split()
    return float(rps), float(p50), float(p99), int(errors)


def per_step(server, rounds=200):
    """Scenario 5: 40 sequential no-op nodes through POST …/run?wait=true, against a 1-node chain."""
    def run(nodes):
        wid = server.workflow(chain(f"chain-{nodes}", [node("Manual", "manualTrigger")] + [node(f"N{i}", "noOp") for i in range(nodes)]), activate=False)
        url = server.url + f"/api/v1/workflows/{wid}/run?wait=true"
        for _ in range(20):
            server.api.post(url, json={"items": [{"n": 1}]})
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            r = server.api.post(url, json={"items": [{"n": 1}]})
            times.append(time.perf_counter() - started)
            assert r.json()["status"] == "succeeded", r.text
        return statistics.median(times) * 1000
    forty, one = run(40), run(1)
    return forty, one, (forty - one) / 39


def flowstack_chains(server, count=1000, clients=8):
    """3-step chains through the queue: accept `count` runs (202) from `clients` concurrent API
    clients (keep-alive sessions), time until the last one finished. The end is the server's
    `finishedAt` of the last execution, not when the client noticed: finding out costs a GET per
    execution, which would otherwise count against FlowStack (procrastinate's side is timed in the
    worker's own process)."""
    import concurrent.futures
    from datetime import datetime
    wid = server.workflow(chain("three", [node("Manual", "manualTrigger"), node("S1", "noOp"), node("S2", "noOp"), node("S3", "noOp")]), activate=False)
    sessions = []
    for _ in range(clients):
        s = server.session()
        s.headers["Authorization"] = server.api.headers["Authorization"]
        sessions.append(s)

    def submit(index):
        r = sessions[index % clients].post(server.url + f"/api/v1/workflows/{wid}/run", json={"items": [{"n": index}]})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
        ids = list(pool.map(submit, range(count)))
    pending, finished = set(ids), []
    while pending:
        for execution in list(pending)[:50]:
            record = server.api.get(server.url + f"/api/v1/executions/{execution}").json()
            if record["status"] in ("succeeded", "failed"):
                assert record["status"] == "succeeded", record
                pending.discard(execution)
                finished.append(datetime.fromisoformat(record["finishedAt"].replace("Z", "+00:00")).timestamp())
        if pending:
            time.sleep(0.02)
    return count / (max(finished) - started)


def main():
    work = tempfile.mkdtemp(prefix="flowstack-bench-engine-")
    mock = Mock()
    rows, steps, chains = [], {}, {}
    for engine in ["sqlite", "postgres"]:
        server = Server(engine, work)
        try:
            for name, definition in scenarios(mock.port).items():
                server.workflow(definition)
                url = server.url + "/webhook/" + name
                probe = server.api.post(url, json={"name": "Ada Lovelace", "value": 7})
                assert probe.status_code == 200, (name, probe.status_code, probe.text)
                for connections in CONNECTIONS:
                    wrk(url, connections, "5s", work)
                    results = [wrk(url, connections, DURATION, work) for _ in range(RUNS)]
                    rps = statistics.median(r[0] for r in results)
                    p50 = statistics.median(r[1] for r in results)
                    p99 = statistics.median(r[2] for r in results)
                    errors = sum(r[3] for r in results)
                    each = ", ".join(f"{r[0]:,.0f}/s {r[2]:.1f}" for r in results)
                    rows.append((name, engine, connections, rps, p50, p99, errors, each))
                    print(f"{name} {engine} c={connections}: {rps:.0f}/s p50 {p50:.1f} ms p99 {p99:.1f} ms errors {errors} (runs: {each})", flush=True)
            steps[engine] = per_step(server)
            print(f"per-step {engine}: {steps[engine]}", flush=True)
            if engine == "postgres":
                chains["flowstack"] = flowstack_chains(server)
                print(f"flowstack 3-step chains/s: {chains['flowstack']:.0f}", flush=True)
        finally:
            server.stop()
    if os.environ.get("PROCRASTINATE_RESULT"):
        chains["procrastinate"] = float(open(os.environ["PROCRASTINATE_RESULT"]).read())

    out = ["<!-- engine benchmarks: generated by scripts/bench-engine.sh -->", "## Workflow engine (issue 3)", "",
           f"Release build, {os.cpu_count()} cores shared by FlowStack, wrk (2 threads) and the mock server; "
           f"closed loop, {DURATION} per run, {RUNS} run(s) after a 5 s warm-up; executions/s, p50 and p99 are the medians "
           "of the runs, and the last column shows each run's executions/s and p99 ms. Every execution is persisted with a "
           "sealed journal entry per node. `errors` counts non-2xx responses and socket errors over all runs.", "",
           "| scenario | database | connections | executions/s | p50 ms | p99 ms | errors | each run |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, engine, connections, rps, p50, p99, errors, each in rows:
        out.append(f"| {name} | {engine} | {connections} | {rps:,.0f} | {p50:.1f} | {p99:.1f} | {errors} | {each} |")
    out += ["", "Targets: single-webhook ≥ 2,200 executions/s with p99 < 50 ms at 200 connections and no failures.", "",
            "**40 sequential no-op nodes** (`POST …/run?wait=true`, one client, median of 200 runs):", "",
            "| database | 40 nodes ms | 1 node ms | per-step overhead ms |", "| --- | --- | --- | --- |"]
    for engine, (forty, one, step) in steps.items():
        out.append(f"| {engine} | {forty:.2f} | {one:.2f} | {step:.3f} |")
    out += ["", "Target: per-step overhead < 1 ms.", ""]
    if chains:
        out += ["**3-step chains on the same PostgreSQL** (1,000 chains queued — FlowStack through its API from 8 concurrent "
                "keep-alive clients, procrastinate by `defer` straight into the database — time from the first submission until "
                "the last chain finished: FlowStack's `finishedAt` of its last execution, procrastinate's worker draining the queue):", "",
                "| system | chains/s |", "| --- | --- |"]
        for system, value in chains.items():
            out.append(f"| {system} | {value:,.0f} |")
        if "procrastinate" in chains and "flowstack" in chains:
            out += ["", f"Ratio FlowStack / procrastinate: {chains['flowstack'] / chains['procrastinate']:.1f}×"]
    print("\n".join(out))
    open(os.path.join(work, "section.md"), "w").write("\n".join(out) + "\n")
    print("SECTION " + os.path.join(work, "section.md"))


if __name__ == "__main__":
    main()
