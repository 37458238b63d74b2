"""Helpers for fault tests (tests/e2e/test_faults.py) and the soak benchmark (scripts/soak.py).

Everything here runs on loopback only, is bounded in time, and cleans up after itself:

- `PgCluster`: a throwaway PostgreSQL 15 cluster of its own (never the suite's shared one).
- `TcpProxy`: a threaded TCP proxy in front of PostgreSQL that the test controls: cut a
  connection right after a statement ran (the client never learns the outcome), stop relaying,
  drop every connection, or run a callback at a chosen statement (e.g. SIGSTOP a replica).
- `Recorder`: a plain-HTTP "remote API" that records every request (the HTTP Request node's
  target), with the replica that sent it.
- `LoadDriver`: N client threads posting to webhooks, bounded in count and time.
- `Deployment`: K `flowstack serve` replicas on one database with a shared keyring, the owner,
  an org, a project, an API key, and workflows.
- Queries straight from PostgreSQL: executions by status, journal duplicates.
"""
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse

import requests

from conftest import Server, free_port

PG_BIN = os.environ.get("FLOWSTACK_TEST_PG_BIN", "/usr/lib/postgresql/15/bin")
FINISHED = ("succeeded", "failed", "cancelled")
UNFINISHED = ("queued", "running", "waiting")


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


# MARK: PostgreSQL


class PgCluster:
    """A PostgreSQL 15 cluster in a temporary directory, on 127.0.0.1 at a free port, trust
    authentication, fsync off. As root the server runs as `postgres` (runuser), as
    scripts/postgres.sh does."""

    def __init__(self, bin_dir=PG_BIN, max_connections=300, settings=()):
        self.bin_dir = bin_dir
        self.max_connections = max_connections
        self.settings = list(settings)
        self.dir = None
        self.port = None

    @staticmethod
    def _as_owner(args):
        return ["runuser", "-u", "postgres", "--", *args] if os.getuid() == 0 else list(args)

    @property
    def data(self):
        return os.path.join(self.dir, "data")

    @property
    def url(self):
        return self.database_url("postgres")

    def database_url(self, name):
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def _options(self):
        options = [f"-p {self.port}", f"-k {self.dir}", "-c listen_addresses=127.0.0.1", "-c fsync=off",
                   f"-c max_connections={self.max_connections}"]
        return " ".join(options + [f"-c {setting}" for setting in self.settings])

    def _pg_ctl(self, *args, timeout=90):
        command = self._as_owner([os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, *args])
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)

    def start(self):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="flowstack-faults-pg.")
            os.chmod(self.dir, 0o755)
            if os.getuid() == 0:
                shutil.chown(self.dir, user="postgres")
            self.port = free_port()
            initdb = subprocess.run(self._as_owner([os.path.join(self.bin_dir, "initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
                                                    "--no-sync"]), capture_output=True, text=True, timeout=120)
            if initdb.returncode != 0:
                raise RuntimeError("initdb failed:\n" + initdb.stdout + initdb.stderr)
        started = self._pg_ctl("-l", os.path.join(self.dir, "server.log"), "-w", "-t", "60", "-o", self._options(), "start")
        if started.returncode != 0:
            raise RuntimeError("PostgreSQL did not start:\n" + started.stdout + started.stderr + self.log_tail())
        return self

    def restart(self, mode="fast"):
        """`pg_ctl restart -m MODE -w`; answers the seconds it took."""
        assert mode in ("smart", "fast", "immediate"), mode
        began = time.time()
        result = self._pg_ctl("-l", os.path.join(self.dir, "server.log"), "restart", "-m", mode, "-w", "-t", "60", "-o", self._options())
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl restart -m {mode} failed:\n" + result.stdout + result.stderr + self.log_tail())
        return time.time() - began

    def stop(self, mode="fast"):
        if self.dir and os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._pg_ctl("-m", mode, "-w", "-t", "30", "stop")

    def destroy(self):
        if self.dir is None:
            return
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.destroy()

    def psql(self, sql, database="postgres"):
        return run_psql(self.database_url(database), sql)

    def create_database(self, prefix="faults"):
        """A fresh database; answers its URL."""
        name = f"{prefix}_{secrets.token_hex(5)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.database_url(name)

    def log_tail(self, lines=40):
        try:
            with open(os.path.join(self.dir, "server.log")) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


def run_psql(url, sql, timeout=30):
    """Runs `sql` (one statement) and answers the output: rows on lines, columns split by '|'."""
    result = subprocess.run(["psql", "-X", url, "-v", "ON_ERROR_STOP=1", "-qAt", "-F", "|", "-c", sql],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}\n{sql}")
    return result.stdout


def rows(url, sql):
    return [line.split("|") for line in run_psql(url, sql).splitlines() if line]


def count_executions(pg_url, workflow_id=None):
    """{status: count} of the executions (of one workflow, or all), straight from PostgreSQL."""
    where = f" WHERE workflow_id = '{workflow_id}'" if workflow_id else ""
    return {status: int(n) for status, n in rows(pg_url, f"SELECT status, count(*) FROM executions{where} GROUP BY status")}


def execution_statuses(pg_url, workflow_id=None):
    """{execution id: status}."""
    where = f" WHERE workflow_id = '{workflow_id}'" if workflow_id else ""
    return {id: status for id, status in rows(pg_url, f"SELECT id, status FROM executions{where}")}


def duplicate_node_events(pg_url, workflow_id=None, expected=None):
    """Nodes with more journal rows in one execution than they should have:
    `[(execution, node, rows)]`.

    The journal's `node` column is the node an event is about (NULL for the start event, seq 0):
    nodeSucceeded, nodeFailed, nodeWaiting, resumed and retryDue all carry it, and the events
    themselves are sealed. So the rows of one node can only be counted: a node that failed and
    retried has several (nodeFailed / retryDue / nodeSucceeded), and so has a Wait: even one short
    enough to sleep in place (under 2 s) journals nodeWaiting and then resumed. `expected` gives
    the rows per node a clean run has ({"Pause": 2}; 1 for nodes not named); for a workflow without
    retries, a node with more rows than that had a completion committed twice."""
    expected = expected or {}
    where = f" AND execution_id IN (SELECT id FROM executions WHERE workflow_id = '{workflow_id}')" if workflow_id else ""
    found = [(e, node, int(n)) for e, node, n in rows(pg_url, f"""
        SELECT execution_id, node, count(*) FROM execution_events WHERE node IS NOT NULL{where}
        GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 1, 2""")]
    return [(e, node, n) for e, node, n in found if n > expected.get(node, 1)]


def event_counts(pg_url, workflow_id):
    """{execution id: number of journal rows}."""
    return {e: int(n) for e, n in rows(pg_url, f"""
        SELECT e.id, count(v.seq) FROM executions e LEFT JOIN execution_events v ON v.execution_id = e.id
        WHERE e.workflow_id = '{workflow_id}' GROUP BY e.id""")}


def pg_activity(pg_url, database_url):
    """Sessions of the database `database_url` names: `[(pid, client_port, state, seconds in state, query)]`."""
    name = urllib.parse.urlsplit(database_url).path.lstrip("/")
    return rows(pg_url, f"""
        SELECT pid, client_port, state, round(extract(epoch FROM now() - state_change))::int, left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
        FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid() ORDER BY state""")


# MARK: A TCP proxy in front of PostgreSQL


SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104


class _Rule:
    def __init__(self, pattern, action, count, after):
        self.pattern = pattern
        self.action = action  # "cut" or a callable(link) -> "relay" | "cut" | "hold"
        self.count = count
        self.after = after


class _Link:
    """One proxied connection: client <-> proxy <-> server."""

    def __init__(self, proxy, client, server, number):
        self.proxy = proxy
        self.client = client
        self.server = server
        self.number = number
        self.lock = threading.Lock()
        self.replied = threading.Condition(self.lock)
        self.ready_count = 0  # ReadyForQuery messages from the server so far
        self.tx_status = None  # the last ReadyForQuery's status: I, T or E
        self.holding = False
        self.held = []
        self.closed = False
        self.seen_after = set()
        self.last_window = b""  # the client's bytes that matched a hook, for its action
        self.client_port = client.getpeername()[1]
        # Message framing of each direction (PostgreSQL protocol v3): the client's first
        # message (startup, SSLRequest) has no type byte.
        self._c_untyped = True
        self._c_buf = b""
        self._s_buf = b""
        self._s_skip_bytes = 0

    # The server side: count ReadyForQuery ('Z') and keep the transaction status.
    def _parse_server(self, data):
        if self._s_skip_bytes:
            skipped = min(self._s_skip_bytes, len(data))
            self._s_skip_bytes -= skipped
            data = data[skipped:]
        buf = self._s_buf + data
        position = 0
        while len(buf) - position >= 5:
            kind = buf[position]
            length = struct.unpack("!I", buf[position + 1:position + 5])[0]
            if kind == ord("Z"):
                if len(buf) - position < 6:
                    break
                with self.lock:
                    self.ready_count += 1
                    self.tx_status = chr(buf[position + 5])
                    if self.tx_status == "I":
                        self.seen_after.clear()
                    self.replied.notify_all()
            if len(buf) - position < 1 + length:
                if kind == ord("Z"):
                    break
                # Skip the rest of a long message without keeping it.
                self._s_skip_bytes = 1 + length - (len(buf) - position)
                position = len(buf)
                break
            position += 1 + length
        self._s_buf = buf[position:]

    # The client side: the types of the complete messages in this chunk, and whether the
    # chunk ends on a message boundary.
    def _parse_client(self, data):
        buf = self._c_buf + data
        position = 0
        kinds = []
        while True:
            if self._c_untyped:
                if len(buf) - position < 8:
                    break
                length, code = struct.unpack("!II", buf[position:position + 8])
                if len(buf) - position < length:
                    break
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    self._s_skip_bytes += 1  # the server answers with one byte, 'N' we hope
                else:
                    self._c_untyped = False
                kinds.append("startup")
                position += length
            else:
                if len(buf) - position < 5:
                    break
                length = struct.unpack("!I", buf[position + 1:position + 5])[0]
                if len(buf) - position < 1 + length:
                    break
                kinds.append(chr(buf[position]))
                position += 1 + length
        self._c_buf = buf[position:]
        return kinds, not self._c_buf

    def wait_reply(self, since, timeout=10):
        """Waits for a ReadyForQuery after the `since`th one; False on timeout."""
        deadline = time.time() + timeout
        with self.replied:
            while self.ready_count <= since and not self.closed:
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.replied.wait(left)
            return self.ready_count > since

    def release(self):
        """Relays the replies held back (see `TcpProxy.hook`) and goes on relaying."""
        with self.lock:
            held, self.held, self.holding = self.held, [], False
            try:
                for data in held:
                    self.client.sendall(data)
            except OSError:
                pass

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.replied.notify_all()
        for sock in (self.client, self.server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _client_to_server(self):
        tail = b""
        pending = None  # a rule matched, waiting for the end of the client's batch (Sync / Query)
        try:
            while True:
                data = self.client.recv(65536)
                if not data:
                    break
                self.proxy._gate.wait()
                kinds, boundary = self._parse_client(data)
                window = tail + data
                # Short enough that a pattern matched in this chunk cannot match again in the next.
                tail = window[-(self.proxy._longest - 1):] if self.proxy._longest > 1 else b""
                with self.lock:
                    since = self.ready_count
                if pending is None:
                    pending = self.proxy._match(self, window)
                    if pending is not None:
                        with self.lock:
                            self.holding = True
                self.server.sendall(data)
                if pending is None or not boundary or not any(kind in ("S", "Q") for kind in kinds):
                    continue
                rule, pending = pending, None
                self.last_window = window
                answered = self.wait_reply(since)
                action = rule.action if rule.action == "cut" else rule.action(self)
                self.proxy._event(self, rule, action, answered)
                if action == "cut":
                    break
                if action == "relay":
                    self.release()
        except OSError:
            pass
        finally:
            self.close()
            self.proxy._forget(self)

    def _server_to_client(self):
        try:
            while True:
                data = self.server.recv(65536)
                if not data:
                    break
                self._parse_server(data)
                self.proxy._gate.wait()
                with self.lock:
                    if self.closed:
                        break
                    if self.holding:
                        self.held.append(data)
                        continue
                    self.client.sendall(data)
        except OSError:
            pass
        finally:
            self.close()


class TcpProxy:
    """A threaded TCP proxy on 127.0.0.1 in front of PostgreSQL (or any TCP server, for the
    pause and drop controls; the statement controls read the PostgreSQL protocol)."""

    def __init__(self, upstream_port, upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links = set()
        self._rules = []
        self._longest = 1
        self._gate = threading.Event()
        self._gate.set()
        self._closed = False
        self.connections = 0
        self.events = []  # (time, link number, pattern, action, whether the server had answered)
        self._thread = threading.Thread(target=self._accept, daemon=True, name="tcp-proxy")
        self._thread.start()

    def url_for(self, database_url):
        """`database_url` with the host and port of this proxy."""
        parts = urllib.parse.urlsplit(database_url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                link = _Link(self, client, server, self.connections)
                self._links.add(link)
            threading.Thread(target=link._client_to_server, daemon=True).start()
            threading.Thread(target=link._server_to_client, daemon=True).start()

    def _forget(self, link):
        with self._lock:
            self._links.discard(link)

    def _match(self, link, window):
        with self._lock:
            for rule in self._rules:
                if rule.after is not None and rule.after in window:
                    link.seen_after.add(rule.after)
            for rule in list(self._rules):
                if rule.count <= 0 or rule.pattern not in window:
                    continue
                if rule.after is not None and rule.after not in link.seen_after:
                    continue
                rule.count -= 1
                if rule.count == 0:
                    self._rules.remove(rule)
                return rule
        return None

    def _event(self, link, rule, action, answered):
        with self._lock:
            self.events.append((time.time(), link.number, rule.pattern, action, answered))

    def hook(self, pattern, action, count=1, after=None):
        """The next `count` times a client->server chunk contains `pattern` (on a connection that
        has sent `after` earlier in the same transaction, if given): the chunk is forwarded, the
        server's reply (up to ReadyForQuery) is awaited but not relayed, and then `action(link)`
        decides: "relay" (the reply goes on to the client), "cut" (the client's connection is
        closed without the reply) or "hold" (kept until `link.release()`)."""
        with self._lock:
            self._rules.append(_Rule(pattern, action, count, after))
            self._longest = max(self._longest, len(pattern), len(after or b""))

    def cut_after(self, pattern, count=1, after=None):
        """Arms the proxy: the next `count` times a chunk containing `pattern` is seen, it is
        forwarded, the server's answer awaited (the statement really ran) and the client's
        connection closed without it: the client does not learn the outcome."""
        self.hook(pattern, "cut", count=count, after=after)

    def disarm(self):
        with self._lock:
            self._rules.clear()

    def armed(self):
        with self._lock:
            return sum(rule.count for rule in self._rules)

    def pause(self):
        """Stops relaying in both directions (connections stay open; data waits in buffers)."""
        self._gate.clear()

    def resume(self):
        self._gate.set()

    def drop_all(self):
        """Closes every connection."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        return len(links)

    def links(self):
        with self._lock:
            return list(self._links)

    def close(self):
        self._closed = True
        self._gate.set()
        try:
            self.listener.close()
        except OSError:
            pass
        self.drop_all()


# MARK: The remote API the HTTP Request node calls


def socket_owner(local_port, remote_port, pids):
    """Which of `pids` holds the TCP socket 127.0.0.1:local_port -> :remote_port, or None."""
    inode = None
    want_local, want_remote = f":{local_port:04X}", f":{remote_port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[1].endswith(want_local) and fields[2].endswith(want_remote):
                        inode = fields[9]
                        break
        except OSError:
            continue
        if inode:
            break
    if not inode:
        return None
    target = f"socket:[{inode}]"
    for name, pid in pids.items():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return name
                except OSError:
                    continue
        except OSError:
            continue
    return None


class Recorder:
    """A plain-HTTP server on 127.0.0.1 standing in for remote APIs. Records every request:
    time, method, path, query, headers and which registered process sent it (`pids`:
    {name: pid}, looked up once per connection). Answers `{"ok": true, "query": …}`; `delay`
    seconds before answering, if set."""

    def __init__(self, delay=0.0):
        self.requests = []
        self.lock = threading.Lock()
        self.pids = {}
        self.delay = delay
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            owner = None

            def handle_one(self):
                began = time.time()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.owner is None and recorder.pids:
                    self.owner = socket_owner(self.client_address[1], recorder.port, dict(recorder.pids)) or "?"
                parts = urllib.parse.urlsplit(self.path)
                query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query).items()}
                entry = {"t": began, "method": self.command, "path": parts.path, "query": query, "headers": dict(self.headers),
                         "body": body[:1000], "peer": self.client_address[1], "owner": self.owner}
                with recorder.lock:
                    recorder.requests.append(entry)
                if recorder.delay:
                    time.sleep(recorder.delay)
                answer = json.dumps({"ok": True, "query": query}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = handle_one

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="recorder")
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def snapshot(self):
        with self.lock:
            return list(self.requests)

    def by_execution(self):
        """{execution id: [requests]} from the `exe` query parameter."""
        grouped = {}
        for entry in self.snapshot():
            grouped.setdefault(entry["query"].get("exe"), []).append(entry)
        return grouped

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# MARK: Workflows


def pipeline_workflow(path, remote_url, respond="immediately", method="GET", wait_seconds=1, name="Pipeline"):
    """Webhook -> HTTP Request (to the recorder, with the request's id and the execution's id in
    the query) -> Wait -> Code -> Set."""
    fetch = {"url": f"{remote_url}/hit", "method": method,
             "query": {"rid": "{{ $json.body.id }}", "exe": "{{ $execution.id }}"}}
    if method != "GET":
        fetch.update({"bodyType": "json", "body": {"rid": "{{ $json.body.id }}"}})
    return {"name": name, "nodes": [
        {"name": "Hook", "type": "flowstack.webhook", "typeVersion": 1,
         "parameters": {"method": "POST", "path": path, "respond": respond}},
        {"name": "Fetch", "type": "flowstack.httpRequest", "typeVersion": 1, "parameters": fetch},
        {"name": "Pause", "type": "flowstack.wait", "typeVersion": 1, "parameters": {"resume": "timeInterval", "seconds": wait_seconds}},
        {"name": "Compute", "type": "flowstack.code", "typeVersion": 1,
         "parameters": {"code": "return items.map(item => ({json: {ok: item.json.ok, rid: item.json.query && item.json.query.rid, n: items.length * 2}}));"}},
        {"name": "Shape", "type": "flowstack.set", "typeVersion": 1, "parameters": {"fields": {"done": "yes", "rid": "{{ $json.rid }}"}}},
    ], "edges": [{"from": "Hook", "to": "Fetch"}, {"from": "Fetch", "to": "Pause"}, {"from": "Pause", "to": "Compute"},
                 {"from": "Compute", "to": "Shape"}]}


PIPELINE_NODES = ["Hook", "Fetch", "Pause", "Compute", "Shape"]
# Journal rows per node of a clean pipeline run: the Wait journals nodeWaiting and resumed.
PIPELINE_ROWS = {"Pause": 2}


def wait_code_workflow(path, respond="immediately", wait_seconds=1, name="WaitCode"):
    """Webhook -> Wait -> Code -> Set."""
    return {"name": name, "nodes": [
        {"name": "Hook", "type": "flowstack.webhook", "typeVersion": 1,
         "parameters": {"method": "POST", "path": path, "respond": respond}},
        {"name": "Pause", "type": "flowstack.wait", "typeVersion": 1, "parameters": {"resume": "timeInterval", "seconds": wait_seconds}},
        {"name": "Compute", "type": "flowstack.code", "typeVersion": 1,
         "parameters": {"code": "return items.map(item => ({json: {id: item.json.body.id, n: items.length * 2}}));"}},
        {"name": "Shape", "type": "flowstack.set", "typeVersion": 1, "parameters": {"fields": {"done": "yes"}}},
    ], "edges": [{"from": "Hook", "to": "Pause"}, {"from": "Pause", "to": "Compute"}, {"from": "Compute", "to": "Shape"}]}


def set_workflow(path, respond="immediately", name="Quick"):
    """Webhook -> Set."""
    return {"name": name, "nodes": [
        {"name": "Hook", "type": "flowstack.webhook", "typeVersion": 1,
         "parameters": {"method": "POST", "path": path, "respond": respond}},
        {"name": "Shape", "type": "flowstack.set", "typeVersion": 1, "parameters": {"fields": {"id": "{{ $json.body.id }}", "done": "yes"}}},
    ], "edges": [{"from": "Hook", "to": "Shape"}]}


def manual_workflow(name="Manual"):
    return {"name": name, "nodes": [
        {"name": "Manual", "type": "flowstack.manualTrigger", "typeVersion": 1, "parameters": {}},
        {"name": "Shape", "type": "flowstack.set", "typeVersion": 1, "parameters": {"fields": {"done": "yes"}}},
    ], "edges": [{"from": "Manual", "to": "Shape"}]}


# MARK: Replicas


def session_for(ca, key=None):
    s = requests.Session()
    s.trust_env = False
    s.verify = ca
    if key:
        s.headers["Authorization"] = f"Bearer {key}"
    return s


class Deployment:
    """K `flowstack serve` replicas on one database.

    The first replica creates the keyring; the others get a copy of its `keyring.json` in their
    fresh data directories (`<data-dir>/keyring.json` is where the server looks when no other
    keyring source is set) and start after the owner, organization, project and API key exist.
    `databases` may give each replica its own URL for the same database (e.g. through a proxy)."""

    def __init__(self, database=None, replicas=2, env=None, extra_args=(), databases=None, root=None):
        self.root = root or tempfile.mkdtemp(prefix="flowstack-faults-")
        self._own_root = root is None
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.databases = list(databases) if databases else [database] * replicas
        self.servers = []
        self.key = None
        self.org = None
        self.project = None

    def _server(self, index):
        data_dir = os.path.join(self.root, f"replica-{index}", "data")
        os.makedirs(os.path.dirname(data_dir), exist_ok=True)
        return Server(data_dir, database=self.databases[index], extra_args=self.extra_args, env=self.env)

    def start(self, setup=True):
        try:
            first = self._server(0)
            self.servers.append(first)
            first.start()
            if setup:
                self.setup()
            for index in range(1, len(self.databases)):
                self.start_replica(index)
        except BaseException:
            self.stop()
            raise
        return self

    def start_replica(self, index):
        server = self._server(index)
        os.makedirs(server.data_dir, mode=0o700, exist_ok=True)
        os.chmod(server.data_dir, 0o700)
        target = os.path.join(server.data_dir, "keyring.json")
        shutil.copyfile(os.path.join(self.servers[0].data_dir, "keyring.json"), target)
        os.chmod(target, 0o600)
        if index < len(self.servers):
            self.servers[index] = server
        else:
            self.servers.append(server)
        server.start()
        return server

    def setup(self):
        first = self.servers[0]
        self.org = first.setup_owner()["organization"]["id"]
        s = first.login()
        r = s.post(first.url + f"/api/v1/orgs/{self.org}/projects", json={"name": "Faults"})
        assert r.status_code == 201, r.text
        self.project = r.json()["id"]
        r = s.post(first.url + f"/api/v1/orgs/{self.org}/api-keys", json={"name": "faults", "scope": "write", "expiresInDays": 90})
        assert r.status_code == 201, r.text
        self.key = r.json()["key"]

    def api(self, index=0):
        """A session for replica `index` with the API key."""
        return session_for(self.servers[index].ca, self.key)

    def url(self, index=0):
        return self.servers[index].url

    def create_workflow(self, definition, activate=True, index=0):
        s = self.api(index)
        r = s.post(self.url(index) + f"/api/v1/projects/{self.project}/workflows", json=definition)
        assert r.status_code == 201, r.text
        workflow = r.json()["id"]
        if activate:
            r = s.post(self.url(index) + f"/api/v1/workflows/{workflow}/activate")
            assert r.status_code == 200, r.text
        return workflow

    def execution(self, execution_id, index=0, timeout=10):
        return self.api(index).get(self.url(index) + f"/api/v1/executions/{execution_id}", timeout=timeout)

    def executions(self, workflow_id=None, status=None, index=0, limit=100, pages=200):
        """Every execution of the project (optionally of one workflow / status), following nextCursor."""
        s = self.api(index)
        params = {"limit": limit}
        if workflow_id:
            params["workflowId"] = workflow_id
        if status:
            params["status"] = status
        found = []
        for _ in range(pages):
            r = s.get(self.url(index) + f"/api/v1/projects/{self.project}/executions", params=params, timeout=30)
            assert r.status_code == 200, r.text
            body = r.json()
            found += body["items"]
            if not body.get("nextCursor"):
                break
            params["cursor"] = body["nextCursor"]
        return found

    def pids(self):
        return {f"replica-{i}": server.proc.pid for i, server in enumerate(self.servers) if server.proc and server.proc.poll() is None}

    def ready(self, index, timeout=5):
        try:
            return session_for(self.servers[index].ca).get(self.url(index) + "/readyz", timeout=timeout).status_code
        except requests.RequestException as error:
            return type(error).__name__

    def logs(self, index, lines=40, grep=None):
        text = self.servers[index].read_output() if self.servers[index].proc else ""
        selected = [line for line in text.splitlines() if grep is None or any(word in line for word in grep)]
        return "\n".join(selected[-lines:])

    def stop(self):
        for server in self.servers:
            if server.proc and server.proc.poll() is None:
                try:
                    os.kill(server.proc.pid, signal.SIGCONT)
                except OSError:
                    pass
            try:
                server.stop()
            except Exception:
                pass
            if getattr(server, "log", None):
                server.log.close()

    def destroy(self, keep_logs=None):
        """Stops every replica and removes the temporary files; with keep_logs (default: the
        environment variable FLOWSTACK_FAULTS_KEEP_LOGS) the server logs stay and are listed."""
        if keep_logs is None:
            keep_logs = bool(os.environ.get("FLOWSTACK_FAULTS_KEEP_LOGS"))
        self.stop()
        for index, server in enumerate(self.servers):
            if getattr(server, "log", None) and keep_logs:
                log(f"replica-{index} log kept: {server.log.name}")
            if getattr(server, "log", None) and not keep_logs:
                try:
                    os.unlink(server.log.name)
                except OSError:
                    pass
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)


# MARK: Load


class Result:
    __slots__ = ("rid", "target", "status", "execution_id", "latency", "error", "began", "ended", "replayed", "body")

    def __init__(self, rid, target, began):
        self.rid = rid
        self.target = target
        self.began = began
        self.status = None
        self.execution_id = None
        self.latency = None
        self.error = None
        self.ended = None
        self.replayed = None
        self.body = None

    def __repr__(self):
        return (f"Result({self.rid} -> {self.target}: {self.status or self.error} {self.execution_id or ''} "
                f"{(self.latency or 0) * 1000:.0f} ms at {time.strftime('%H:%M:%S', time.localtime(self.began))}"
                f"{'.%03d' % int(self.began % 1 * 1000)})")


class LoadDriver:
    """N client threads posting `{"id": rid}` to webhooks, at `rate` requests per second in all,
    until `duration` seconds have passed or `max_requests` were sent (or `stop()`). Each thread
    keeps a requests.Session (verify=the target's CA, trust_env=False) and paces itself, so a
    failing target is not hammered. Records per request: HTTP status, executionId, latency."""

    def __init__(self, targets, threads=8, rate=40.0, duration=20.0, max_requests=None, timeout=30.0, prefix=None,
                 headers=None, body=None, sink=None):
        """`targets`: [(url, ca)], thread i posts to targets[i % len(targets)]. `headers` and `body`:
        optional callables of the request id. `sink`: a callable that gets each result instead of
        keeping it in `results` (for long runs)."""
        self.sink = sink
        self.targets = list(targets)
        self.threads = threads
        self.rate = rate
        self.duration = duration
        self.max_requests = max_requests if max_requests is not None else int(rate * duration) + threads
        self.timeout = timeout
        self.prefix = prefix or secrets.token_hex(3)
        self.headers = headers
        self.body = body or (lambda rid: {"id": rid})
        self.results = []
        self._lock = threading.Lock()
        self._sent = 0
        self._stop = threading.Event()
        self._workers = []
        self.started = None

    def start(self):
        self.started = time.time()
        for index in range(self.threads):
            worker = threading.Thread(target=self._work, args=(index,), daemon=True, name=f"load-{index}")
            worker.start()
            self._workers.append(worker)
        return self

    def _work(self, index):
        url, ca = self.targets[index % len(self.targets)]
        session = session_for(ca)
        interval = self.threads / self.rate
        next_at = self.started + index / self.rate
        k = 0
        deadline = self.started + self.duration
        try:
            while not self._stop.is_set():
                now = time.time()
                if now >= deadline:
                    break
                if next_at > now:
                    if self._stop.wait(next_at - now):
                        break
                    if time.time() >= deadline:
                        break
                with self._lock:
                    if self._sent >= self.max_requests:
                        break
                    self._sent += 1
                rid = f"{self.prefix}-{index}-{k}"
                k += 1
                # After a stall, go on at the rate from now rather than catch up in a burst.
                next_at = max(next_at + interval, time.time())
                result = Result(rid, url, time.time())
                try:
                    r = session.post(url, json=self.body(rid), headers=self.headers(rid) if self.headers else None, timeout=self.timeout)
                    result.status = r.status_code
                    result.replayed = r.headers.get("Idempotent-Replayed")
                    try:
                        body = r.json()
                        result.body = body
                        if isinstance(body, dict):
                            result.execution_id = body.get("executionId") or body.get("id")
                    except ValueError:
                        result.body = r.text[:300]
                except requests.RequestException as error:
                    result.error = type(error).__name__
                    # A fresh connection next time (the old one may be dead).
                    session.close()
                    session = session_for(ca)
                result.ended = time.time()
                result.latency = result.ended - result.began
                if self.sink is not None:
                    self.sink(result)
                    continue
                with self._lock:
                    self.results.append(result)
        finally:
            session.close()

    def stop(self):
        self._stop.set()

    def join(self, timeout=None):
        deadline = time.time() + (timeout if timeout is not None else self.duration + self.timeout + 10)
        for worker in self._workers:
            worker.join(max(0.1, deadline - time.time()))
        return self.results

    def run(self):
        return self.start().join()

    def snapshot(self):
        with self._lock:
            return list(self.results)

    def summary(self):
        results = self.snapshot()
        outcome = {}
        for result in results:
            key = result.status if result.status is not None else result.error
            outcome[key] = outcome.get(key, 0) + 1
        latencies = sorted(r.latency for r in results if r.status == 200)
        return {"requests": len(results), "outcomes": outcome, "p50_ms": percentile(latencies, 50) * 1000,
                "p99_ms": percentile(latencies, 99) * 1000, "max_ms": (latencies[-1] if latencies else 0) * 1000}


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    index = min(len(values) - 1, max(0, int(round(p / 100 * len(values) + 0.5)) - 1))
    return values[index]


# MARK: Checks


def wait_until_finished(pg_url, workflow_id, deadline, interval=0.5):
    """Polls until no execution of the workflow is queued, running or waiting, or `deadline`
    (a time.time()) passes. Answers {status: count}."""
    while True:
        counts = count_executions(pg_url, workflow_id)
        if not any(counts.get(status) for status in UNFINISHED) or time.time() >= deadline:
            return counts
        time.sleep(interval)


def hook_rid(execution_body):
    """The request id a webhook execution was started with, from its Hook node's output."""
    for node in execution_body.get("nodes") or []:
        if node["node"] == "Hook":
            try:
                return node["output"][0][0]["body"]["id"]
            except (KeyError, IndexError, TypeError):
                return None
    return None


def verify_webhook_outcomes(deployment, pg_url, workflow_id, results, recorder=None, sample_nodes=40, api_index=0):
    """Compares what the clients were told with what the database holds. Answers a report dict
    with `problems` (a list of strings). A problem is:
    - an execution a client got 200 for that is missing or did not succeed;
    - an execution nobody got 200 for whose request got a 5xx (the "unknown commit" lie);
    - two executions for one request;
    - a node with two journal rows in one execution (committed twice);
    - a sampled execution whose nodes are not each there exactly once."""
    problems = []
    statuses = execution_statuses(pg_url, workflow_id)
    by_rid = {r.rid: r for r in results}
    accepted = {r.execution_id: r for r in results if r.status == 200 and r.execution_id}
    for execution_id, result in accepted.items():
        status = statuses.get(execution_id)
        if status != "succeeded":
            problems.append(f"accepted {result} is {status or 'missing from the database'}")
    orphans = sorted(set(statuses) - set(accepted))
    recorded = {}
    if recorder is not None:
        for entry in recorder.snapshot():
            exe, rid = entry["query"].get("exe"), entry["query"].get("rid")
            if exe and rid:
                recorded[exe] = rid
    orphan_report = []
    for execution_id in orphans:
        rid = None
        try:
            r = deployment.execution(execution_id, index=api_index)
            if r.status_code == 200:
                rid = hook_rid(r.json())
        except requests.RequestException:
            pass
        rid = rid or recorded.get(execution_id)
        result = by_rid.get(rid)
        orphan_report.append((execution_id, statuses[execution_id], rid, result))
        if result is None:
            problems.append(f"execution {execution_id} ({statuses[execution_id]}) belongs to no request sent (rid {rid})")
        elif result.status is not None and result.status >= 500:
            problems.append(f"unknown-commit lie: {result} answered {result.status} {str(result.body)[:160]} "
                            f"but execution {execution_id} exists ({statuses[execution_id]})")
        elif result.status == 200:
            problems.append(f"two executions for one request: {result} and {execution_id} ({statuses[execution_id]})")
        elif statuses[execution_id] != "succeeded":
            problems.append(f"execution {execution_id} of unanswered {result} is {statuses[execution_id]}")
    duplicates = duplicate_node_events(pg_url, workflow_id, expected=PIPELINE_ROWS)
    for execution_id, node, n in duplicates[:20]:
        problems.append(f"node {node} has {n} journal rows in execution {execution_id}")
    sampled = list(accepted)[:: max(1, len(accepted) // sample_nodes)][:sample_nodes] if accepted else []
    for execution_id in sampled:
        r = deployment.execution(execution_id, index=api_index)
        if r.status_code != 200:
            problems.append(f"GET execution {execution_id}: {r.status_code} {r.text[:200]}")
            continue
        # Each node once as succeeded (the Wait also once as waiting), nothing twice.
        runs = [(n["node"], n["status"]) for n in r.json().get("nodes") or []]
        succeeded = [node for node, status in runs if status == "succeeded"]
        if len(runs) != len(set(runs)) or (statuses.get(execution_id) == "succeeded" and sorted(succeeded) != sorted(PIPELINE_NODES)):
            problems.append(f"execution {execution_id} node runs {runs}")
    http_calls = {}
    if recorder is not None:
        for exe, entries in recorder.by_execution().items():
            http_calls[len(entries)] = http_calls.get(len(entries), 0) + 1
    failed_requests = {}
    for r in results:
        if r.status != 200:
            key = r.status if r.status is not None else r.error
            failed_requests[key] = failed_requests.get(key, 0) + 1
    return {"executions": len(statuses), "by_status": count_executions(pg_url, workflow_id), "accepted": len(accepted),
            "orphans": orphan_report, "duplicate_node_rows": len(duplicates), "sampled": len(sampled),
            "http_calls_per_execution": http_calls, "not_200": failed_requests, "problems": problems}


def print_report(title, report):
    log(f"== {title}")
    for key, value in report.items():
        if key in ("problems", "orphans"):
            continue
        log(f"   {key}: {value}")
    for execution_id, status, rid, result in report.get("orphans", [])[:20]:
        log(f"   orphan {execution_id} {status} rid={rid} client={result}")
    for problem in report.get("problems", [])[:40]:
        log(f"   PROBLEM {problem}")
    if len(report.get("problems", [])) > 40:
        log(f"   ... {len(report['problems']) - 40} more problems")


def process_stats(pid):
    """RSS (KiB), open descriptors and `flowstack-sandbox` children of a process."""
    rss = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    sandboxes = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid and name.startswith("flowstack-sandb"):
            sandboxes += 1
    return {"rss_kib": rss, "fds": fds, "sandboxes": sandboxes}
